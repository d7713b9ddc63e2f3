package shadow

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shadowproxy/shadowproxy/compare"
	"github.com/shadowproxy/shadowproxy/mirror"
	"github.com/shadowproxy/shadowproxy/rewrite"
	"github.com/shadowproxy/shadowproxy/target/mysqltarget"
)

// mysqlReader runs reads on MySQL or MariaDB: the Postgres text translated
// by rewrite.TranslateToMySQL, its parameters converted to MySQL values.
type mysqlReader struct {
	db   *sql.DB
	conv *mysqltarget.Converter
}

// newMySQLReader opens (lazily) a pool of up to size connections to the
// mysql:// URL, with the target's session (sql_mode, UTC) and the driver
// set up so that every value arrives as text.
func newMySQLReader(rawURL string, size int) (*mysqlReader, error) {
	cfg, err := mysqltarget.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	// Dates and times as text in sql.RawBytes, which compare decodes;
	// parseTime would turn them into time.Time, which RawBytes cannot hold.
	cfg.ParseTime = false
	// One statement per read, never a batch smuggled in a parameter.
	cfg.MultiStatements = false
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	// Servers close idle connections after wait_timeout; recycle earlier.
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &mysqlReader{db: db, conv: mysqltarget.NewConverter(nil)}, nil
}

func (m *mysqlReader) close() error { return m.db.Close() }

func (m *mysqlReader) read(ctx context.Context, w *worker, r *Request, hints []compare.Family, digestOnly bool) (*compare.Result, int64, error) {
	p := w.s.prepared(r.sql())
	if p.myErr != nil {
		return nil, 0, &notShadowedError{reason: noTranslationReason(p.myErr), err: p.myErr}
	}
	args, err := m.args(w, r, p.my)
	if err != nil {
		return nil, 0, &notShadowedError{reason: IgnoredParamNotConvertible, err: err}
	}
	started := time.Now()
	timeout := w.s.opts.Timeout
	rows, err := m.db.QueryContext(ctx, p.my.SQL, args...)
	if err != nil {
		return m.failure(ctx, err, timeout, started)
	}
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		return m.failure(ctx, err, timeout, started)
	}
	dec := compare.NewMySQLRowDecoder(types, hints)
	cols, jsonCols := jsonAsText(dec.Columns(), hints)
	col := newCollector(w.s, cols, digestOnly)
	raw := make([]sql.RawBytes, len(types))
	dest := make([]any, len(types))
	for i := range raw {
		dest[i] = &raw[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			col.release()
			return m.failure(ctx, err, timeout, started)
		}
		row, err := dec.DecodeRow(raw)
		if err != nil {
			col.release()
			return nil, 0, fmt.Errorf("%w: %w", errDecode, err)
		}
		for _, i := range jsonCols {
			if v := row[i]; v.Family == compare.FamilyText {
				if j, err := compare.JSONValue([]byte(v.Str)); err == nil {
					row[i] = j
				}
			}
		}
		var n int64
		for _, b := range raw {
			n += int64(len(b)) + 4
		}
		col.add(row, n)
	}
	if err := rows.Err(); err != nil {
		col.release()
		return m.failure(ctx, err, timeout, started)
	}
	res := col.result()
	res.Elapsed = time.Since(started)
	return res, col.size, nil
}

// jsonAsText finds the columns MariaDB reports as text that hold JSON on
// the old side (MariaDB's JSON is LONGTEXT; compare takes the old family
// as a hint only for booleans and UUIDs) and returns the columns with those
// typed as JSON. Row by row comparisons would parse the text anyway, but a
// digest sees each side alone and needs the same family on both.
func jsonAsText(cols []compare.Column, hints []compare.Family) ([]compare.Column, []int) {
	var idx []int
	for i, c := range cols {
		if i < len(hints) && hints[i] == compare.FamilyJSON && c.Family == compare.FamilyText {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return cols, nil
	}
	out := append([]compare.Column(nil), cols...)
	for _, i := range idx {
		out[i].Family = compare.FamilyJSON
	}
	return out, idx
}

// unreachableCodes are server errors about the connection or the login,
// not about the query.
var unreachableCodes = map[uint16]bool{
	1040: true, // too many connections
	1044: true, // access denied to the database
	1045: true, // access denied for the user
	1049: true, // unknown database
	1053: true, // server shutdown in progress
	1203: true, // too many connections for the user
	1226: true, // user resource limit exceeded
	1927: true, // connection killed (MariaDB)
}

// failure maps a driver error to a result (query error, timeout) or to
// unreachable.
func (m *mysqlReader) failure(ctx context.Context, err error, timeout time.Duration, started time.Time) (*compare.Result, int64, error) {
	var myErr *mysql.MySQLError
	switch {
	case ctx.Err() != nil:
		return timeoutResult(timeout, started), 0, nil
	case errors.As(err, &myErr) && !unreachableCodes[myErr.Number]:
		code := string(myErr.SQLState[:])
		if myErr.SQLState == [5]byte{} {
			code = "HY000"
		}
		e := &compare.Error{Code: code, Message: myErr.Message}
		// max_statement_time (MariaDB), max_execution_time (MySQL).
		e.Timeout = myErr.Number == 1969 || myErr.Number == 3024
		return &compare.Result{Err: e, Elapsed: time.Since(started)}, 0, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timeoutResult(timeout, started), 0, nil
	}
	return nil, 0, fmt.Errorf("%w: %w", errUnreachable, err)
}

// args converts the Postgres parameters to MySQL values in the order of
// the translation's placeholders.
func (m *mysqlReader) args(w *worker, r *Request, my *rewrite.MySQLStatement) ([]any, error) {
	pgArgs := make([]any, len(r.Params))
	for i := range r.Params {
		v, err := m.param(w, r, i)
		if err != nil {
			return nil, fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		pgArgs[i] = v
	}
	return my.BindArgs(pgArgs)
}

// param converts parameter i: binary values are decoded by their type and
// re-encoded as Postgres text, then every value goes through the
// converter the mirror uses for row images, so that a parameter compares
// with the column values exactly as they were written to MySQL.
func (m *mysqlReader) param(w *worker, r *Request, i int) (any, error) {
	data := r.Params[i]
	if data == nil {
		return nil, nil
	}
	var oid uint32
	if i < len(r.ParamOIDs) {
		oid = r.ParamOIDs[i]
	}
	text := string(data)
	if r.paramFormat(i) == pgtype.BinaryFormatCode {
		s, err := binaryToText(w.types, oid, data)
		if err != nil {
			return nil, err
		}
		text = s
	}
	return m.conv.Convert(mirror.Column{Name: fmt.Sprintf("$%d", i+1), TypeOID: oid}, mirror.Text(text))
}

// binaryToText re-encodes a binary parameter as Postgres text.
func binaryToText(types *pgtype.Map, oid uint32, data []byte) (string, error) {
	t, ok := types.TypeForOID(oid)
	if !ok {
		return "", fmt.Errorf("binary value of unknown type %d", oid)
	}
	v, err := t.Codec.DecodeValue(types, oid, pgtype.BinaryFormatCode, data)
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", t.Name, err)
	}
	text, err := types.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return "", fmt.Errorf("encode %s as text: %w", t.Name, err)
	}
	if text == nil {
		return "", fmt.Errorf("%s decoded to NULL", t.Name)
	}
	return string(text), nil
}
