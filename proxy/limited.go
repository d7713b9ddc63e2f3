package proxy

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/shadowproxy/shadowproxy/protocol"
)

// limitedPortal serves a captured write with the client's own RETURNING
// that the client executes with a row limit, as asyncpg's fetchrow does
// (limit 1) and any driver reading a RETURNING in batches may.
//
// The server runs such a write whole at its first Execute anyway and holds
// its rows; with the limit it would send only the first ones, and the
// capture columns of the rest would reach the proxy only if the client
// fetched them. So the proxy sends that Execute without a limit, captures
// every row, passes the client as many as it asked for and holds the rest.
// The client's later Executes of the portal still go to the server, which
// has nothing left and answers with a bare CommandComplete; the proxy
// answers instead with the held rows, limit by limit, just as the server
// would have: PortalSuspended after exactly limit rows, else
// CommandComplete with the count of rows of that Execute.
//
// The upstream goroutine alone reads and writes it, in the order of the
// client's Executes; the client goroutine only finds it by portal name
// (session.limited) and forgets it when the portal ends.
type limitedPortal struct {
	sent int      // rows passed to the client by the first Execute
	rows [][]byte // DataRow messages held back, the client's columns only
	tag  []byte   // the first CommandComplete's tag, e.g. "INSERT 0 5"
}

var portalSuspendedMsg = []byte{'s', 0, 0, 0, 4}

// ran handles the CommandComplete of the first Execute (the whole write):
// it returns what the client gets instead when the client's limit was
// reached, as the server would have suspended the portal there.
func (lp *limitedPortal) ran(msg protocol.Message, limit uint32) ([]byte, bool) {
	tag, _, _ := protocol.CString(msg.Body)
	lp.tag = append([]byte(nil), tag...)
	if lp.sent < int(limit) {
		return nil, false // fewer rows than the limit: the server's own answer
	}
	return portalSuspendedMsg, true
}

// next answers a later Execute of the portal with the next rows held back.
func (lp *limitedPortal) next(limit uint32) []byte {
	k := len(lp.rows)
	if limit != 0 && int(limit) < k {
		k = int(limit)
	}
	var out []byte
	for _, r := range lp.rows[:k] {
		out = append(out, r...)
	}
	lp.rows = lp.rows[k:]
	if limit != 0 && k == int(limit) {
		return append(out, portalSuspendedMsg...)
	}
	return appendCommandComplete(out, retag(lp.tag, k))
}

// retag returns a command tag with its row count replaced by n: "INSERT 0
// 5" becomes "INSERT 0 n", "UPDATE 5" "UPDATE n".
func retag(tag []byte, n int) []byte {
	i := bytes.LastIndexByte(tag, ' ')
	if i < 0 {
		return tag
	}
	return strconv.AppendInt(append([]byte(nil), tag[:i+1]...), int64(n), 10)
}

func appendCommandComplete(out, tag []byte) []byte {
	out = append(out, 'C')
	out = binary.BigEndian.AppendUint32(out, uint32(4+len(tag)+1))
	out = append(out, tag...)
	return append(out, 0)
}
