// Package rewrite understands the SQL that passes through the proxy. It has
// two jobs:
//
//  1. Classification (hot path). A Classifier parses a query string with
//     pg_query (the real PostgreSQL 17 grammar, via cgo) and describes each
//     statement in it: its Kind (Read, Write, DDL, Tx, Session, Other or
//     Unparsed), the tables it reads and writes, a fingerprint that is stable
//     across constants, and flags a router needs (FOR UPDATE, RETURNING,
//     volatile functions, ...). Results are cached per query text in a
//     bounded LRU, so a busy session pays the parse cost (tens of µs) once per
//     distinct text and a map lookup afterwards.
//
//  2. Translation (mirroring). TranslateToMySQL turns one Postgres INSERT,
//     UPDATE or DELETE into MySQL text with `?` placeholders and a map from
//     each `?` to the Postgres `$n` it stands for. It walks the pg_query parse
//     tree and emits MySQL itself; anything it cannot translate faithfully is
//     refused with an *UnsupportedError rather than approximated.
//
// Classification never fails on bad SQL: a statement that does not parse is
// reported as a single Unparsed statement so the proxy can forward it and let
// the server produce the real error message.
package rewrite
