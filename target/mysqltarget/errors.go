package mysqltarget

import (
	"errors"

	"github.com/go-sql-driver/mysql"

	"github.com/shadowproxy/shadowproxy/mirror"
)

// transientErrors are server errors that say nothing about the data:
// retrying the batch later can succeed.
var transientErrors = map[uint16]bool{
	1040: true, // too many connections
	1053: true, // server shutdown in progress
	1158: true, // network read error
	1159: true, // network read timeout
	1160: true, // network write error
	1161: true, // network write timeout
	1203: true, // too many connections for the user
	1205: true, // lock wait timeout
	1213: true, // deadlock
	1226: true, // user resource limit exceeded
	1290: true, // server running with --read-only (failover in progress)
	1317: true, // query interrupted
	1792: true, // read-only transaction
	1836: true, // read-only mode
	1927: true, // connection killed (MariaDB)
	1969: true, // max_statement_time exceeded (MariaDB)
	3024: true, // max_execution_time exceeded (MySQL)
}

// rejectErrors are server errors about the data or the schema: the same
// batch fails the same way again.
var rejectErrors = map[uint16]bool{
	1022: true, // duplicate key
	1046: true, // no database selected
	1048: true, // column cannot be null
	1054: true, // unknown column
	1062: true, // duplicate entry
	1064: true, // syntax error
	1136: true, // column count does not match
	1142: true, // command denied on table
	1143: true, // command denied on column
	1146: true, // table does not exist
	1153: true, // packet larger than max_allowed_packet
	1169: true, // unique constraint violated
	1216: true, // foreign key: no parent row
	1217: true, // foreign key: child rows exist
	1227: true, // access denied (privilege needed)
	1264: true, // out of range
	1265: true, // data truncated
	1292: true, // incorrect value (dates, numbers)
	1364: true, // column has no default
	1365: true, // division by zero
	1366: true, // incorrect value for column
	1406: true, // data too long
	1411: true, // incorrect value for function
	1451: true, // foreign key: child rows exist
	1452: true, // foreign key: no parent row
	1525: true, // incorrect value
	1557: true, // duplicate entry (foreign key)
	1586: true, // duplicate entry
	1690: true, // value out of range
	1859: true, // duplicate entry for key
	3105: true, // value for a generated column
	3140: true, // invalid JSON
	3819: true, // check constraint violated (MySQL)
	4025: true, // constraint failed (MariaDB, also JSON validity)
}

// classify tells a refusal of the data from a transient failure. It
// returns the *mirror.RejectError (ChangeIndex -1, to be filled in) and
// true for a refusal. Server errors not listed either way are refusals when
// their SQLSTATE is in class 22 (data exception), 23 (constraint) or 42
// (syntax, access, undefined object), and transient otherwise; errors that
// are not server errors (bad connection, network, timeout) are transient,
// except a statement too large for the driver's packet limit.
func classify(err error) (*mirror.RejectError, bool) {
	if err == nil {
		return nil, false
	}
	var rej *mirror.RejectError
	if errors.As(err, &rej) {
		return rej, true
	}
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return &mirror.RejectError{Err: err, ChangeIndex: -1}, true
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return nil, false
	}
	state := ""
	if me.SQLState != [5]byte{} {
		state = string(me.SQLState[:])
	}
	switch {
	case transientErrors[me.Number]:
		return nil, false
	case rejectErrors[me.Number]:
	case len(state) == 5 && (state[:2] == "22" || state[:2] == "23" || state[:2] == "42"):
	default:
		return nil, false
	}
	return &mirror.RejectError{Err: err, SQLState: state, ChangeIndex: -1}, true
}
