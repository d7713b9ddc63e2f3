// Package delayproxy is a loopback TCP forwarder that makes a server answer
// late: every chunk the server sends is held for a fixed delay before it is
// passed on to the client, while what the client sends goes through at
// once. Put in front of a database, it turns a local server into one that
// looks a network away (or overloaded), which is what the bench needs to
// show that a slow new database does not slow the proxy's clients.
//
// The delay is a latency, not a throughput limit: each chunk is due its
// delay after it was read, so chunks read 1 ms apart are written 1 ms apart,
// and a pipelined conversation takes one delay, not one per chunk, however
// many chunks it comes back in (a server answering a pipeline flushes at
// every Sync). What waits is bounded in bytes (2 MiB per connection);
// beyond that the server is made to wait, as a full network would. Order
// is kept. End of stream is forwarded as a half-close in both directions (the
// server's after its delayed data), so protocols that shut down one side
// first work through it.
//
// It listens on, and forwards to, loopback addresses only: it is a test
// tool and refuses to be pointed at a network.
//
//	p, err := delayproxy.New("127.0.0.1:0", "127.0.0.1:5432", 50*time.Millisecond)
//	if err != nil { ... }
//	defer p.Close()
//	// connect to p.Addr() instead of 127.0.0.1:5432
package delayproxy
