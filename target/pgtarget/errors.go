package pgtarget

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// rejectClasses are the SQLSTATE classes in which the new database refuses
// the data itself, so that applying the same batch again fails the same way:
//
//	0A feature not supported        21 cardinality violation
//	22 data exception               23 integrity constraint violation
//	27 triggered data change        2F SQL routine exception
//	3F invalid schema name          42 syntax error or access rule violation
//	                                   (undefined table or column, permission)
//	44 WITH CHECK OPTION violation  54 program limit exceeded (row too big)
//	P0 PL/pgSQL (RAISE in a trigger that fires despite the replica role)
//
// Everything else is transient: connection errors (08), operator
// intervention and shutdown (57, including 57014 statement timeout),
// insufficient resources (53), serialization failures and deadlocks (40),
// lock_not_available (55P03), system errors (58, XX), and any error that is
// not a server error at all (network, context deadline).
var rejectClasses = map[string]bool{
	"0A": true, "21": true, "22": true, "23": true, "27": true, "2F": true,
	"3F": true, "42": true, "44": true, "54": true, "P0": true,
}

// classify turns an error of applying change index into a
// *mirror.RejectError when the server refused the data, and returns it
// unchanged (transient) otherwise.
func classify(err error, index int) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && rejectClasses[pgErr.Code[:2]] {
		return &mirror.RejectError{Err: err, SQLState: pgErr.Code, ChangeIndex: index}
	}
	return err
}
