package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"os"
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
// Held rows beyond limitedHoldMax bytes go to an unlinked temporary file,
// as the server's own tuplestore spills to disk, so that a large write
// read in small batches does not grow the proxy without bound.
//
// The upstream goroutine alone reads and writes it, in the order of the
// client's Executes; the client goroutine only finds it by portal name
// (session.limited) and forgets it when the portal ends. The file is closed
// once drained; a portal the client abandons leaves it to the garbage
// collector (os.File closes itself).
type limitedPortal struct {
	sent int      // rows passed to the client by the first Execute
	rows [][]byte // DataRow messages held back in memory, the client's columns only
	held int      // bytes in rows
	tag  []byte   // the first CommandComplete's tag, e.g. "INSERT 0 5"

	// Rows past limitedHoldMax, in order after rows.
	spill   *os.File
	spillW  *bufio.Writer
	spillR  *bufio.Reader
	spilled int // rows in the file not handed out yet
}

// limitedHoldMax is how many bytes of held rows a portal keeps in memory.
const limitedHoldMax = 16 << 20

// hold keeps a DataRow message (copied) for a later Execute.
func (lp *limitedPortal) hold(row []byte) {
	if lp.spill == nil && lp.held+len(row) > limitedHoldMax {
		if f, err := os.CreateTemp("", "shadowproxy-portal-"); err == nil {
			os.Remove(f.Name()) // gone from the directory, alive while open
			lp.spill, lp.spillW = f, bufio.NewWriter(f)
		}
	}
	if lp.spillW != nil {
		if _, err := lp.spillW.Write(row); err == nil {
			lp.spilled++
			return
		}
	}
	lp.rows = append(lp.rows, append([]byte(nil), row...))
	lp.held += len(row)
}

// take appends up to k held rows (k < 0: all) to out, and the number taken.
func (lp *limitedPortal) take(out []byte, k int) ([]byte, int) {
	n := 0
	for (k < 0 || n < k) && len(lp.rows) > 0 {
		out = append(out, lp.rows[0]...)
		lp.held -= len(lp.rows[0])
		lp.rows = lp.rows[1:]
		n++
	}
	if lp.spill != nil && lp.spillR == nil {
		if lp.spillW.Flush() != nil {
			lp.dropSpill()
		} else if _, err := lp.spill.Seek(0, io.SeekStart); err != nil {
			lp.dropSpill()
		} else {
			lp.spillR = bufio.NewReader(lp.spill)
		}
	}
	for (k < 0 || n < k) && lp.spilled > 0 {
		var head [5]byte
		if _, err := io.ReadFull(lp.spillR, head[:]); err != nil {
			lp.dropSpill()
			break
		}
		size := int(binary.BigEndian.Uint32(head[1:]))
		out = append(out, head[:]...)
		body := len(out)
		out = append(out, make([]byte, size-4)...)
		if _, err := io.ReadFull(lp.spillR, out[body:]); err != nil {
			out = out[:body-5]
			lp.dropSpill()
			break
		}
		lp.spilled--
		n++
	}
	if lp.spill != nil && lp.spilled == 0 {
		lp.dropSpill()
	}
	return out, n
}

// dropSpill closes the file; rows still in it are lost (a disk error),
// which the client sees as fewer rows, never as a malformed message.
func (lp *limitedPortal) dropSpill() {
	lp.spill.Close()
	lp.spill, lp.spillW, lp.spillR, lp.spilled = nil, nil, nil, 0
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
	want := -1
	if limit != 0 {
		want = int(limit)
	}
	out, k := lp.take(nil, want)
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
