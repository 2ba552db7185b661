package transfer

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The server side of the bulk channel (protocol and reasons in wire.go).
// A token is issued only over an authenticated libp2p stream, to the peer
// at the other end, for a TCP connection from the IP that peer's direct
// connection comes from; it is good for one connection, for offerTTL.
// What a bulk connection may hold is bounded like a stream's: it takes one
// of the server's MaxServing slots (shared with streams) and one block in
// flight plus its buffers.

var (
	// offerTTL is how long a token waits to be presented. The requester
	// dials as soon as it reads the offer, over a path its libp2p
	// connection already uses (milliseconds); 10 s covers a loaded machine,
	// and an unused token holds nothing but a map entry. A var for tests.
	offerTTL = 10 * time.Second
)

// helloTimeout is how long an accepted TCP connection has to present its
// hello: a client that connects and sends nothing is dropped. (Each
// server keeps its own copy, which tests shorten.)
const helloTimeout = 5 * time.Second

const (
	// maxOffers bounds the tokens outstanding at once, over all peers (a
	// map entry each): four per serving slot.
	maxOffers = 4 * MaxServing
	// maxPeerOffers bounds one peer's outstanding tokens, so that one peer
	// cannot take every offer: a fetch uses one (transfer.Streams) and a
	// node runs at most two at once (a model and its outer state).
	maxPeerOffers = 4
	// maxPeerBulk bounds one peer's bulk connections served at once: the
	// per-peer cap node/p2p puts on this protocol's streams (8).
	maxPeerBulk = 8
	// maxHellos bounds the TCP connections accepted but not yet past their
	// hello (a goroutine and a socket each, for at most helloTimeout): port
	// scanners and clients without a token cannot pile up.
	maxHellos = 16
)

// listenTCP opens a bulk listener; tests replace it.
var listenTCP = func(ip net.IP) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
}

// claim is a token's promise: who may present it, from where, until when.
type claim struct {
	peer    peer.ID
	from    net.IP
	expires time.Time
}

type bulkServer struct {
	off          bool
	hellos       chan struct{}
	helloTimeout time.Duration

	mu     sync.Mutex
	closed bool
	lns    map[string]net.Listener // by local IP, opened on first offer
	offers map[[tokenBytes]byte]claim
	active map[peer.ID]int
	conns  map[net.Conn]struct{}
}

func (b *bulkServer) init() {
	b.hellos = make(chan struct{}, maxHellos)
	b.helloTimeout = helloTimeout
	b.lns = map[string]net.Listener{}
	b.offers = map[[tokenBytes]byte]claim{}
	b.active = map[peer.ID]int{}
	b.conns = map[net.Conn]struct{}{}
}

// offer answers an offer request on st: a token and a TCP listener on the
// IP st's connection arrived on, or nil when the connection is relayed or
// not over IP, the peer already holds maxPeerOffers tokens, or no listener
// can be opened there.
func (s *Server) offer(st network.Stream) *offer {
	if s.bulk.off {
		return nil
	}
	c := st.Conn()
	if c.Stat().Limited {
		return nil // relayed: there is no direct path
	}
	local, err := manet.ToIP(c.LocalMultiaddr())
	if err != nil {
		return nil
	}
	remote, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil {
		return nil
	}
	return s.offerTo(c.RemotePeer(), local, remote)
}

// offerTo issues a token to p, to be presented from remote, for a listener
// on local.
func (s *Server) offerTo(p peer.ID, local, remote net.IP) *offer {
	b := &s.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	now := time.Now()
	mine := 0
	for t, c := range b.offers {
		switch {
		case now.After(c.expires):
			delete(b.offers, t)
		case c.peer == p:
			mine++
		}
	}
	if len(b.offers) >= maxOffers || mine >= maxPeerOffers {
		return nil
	}
	ln := b.lns[local.String()]
	if ln == nil {
		var err error
		if ln, err = listenTCP(local); err != nil {
			return nil
		}
		b.lns[local.String()] = ln
		go s.accept(ln)
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return nil
	}
	o := &offer{ip: local, port: addr.Port}
	if _, err := rand.Read(o.token[:]); err != nil {
		return nil
	}
	b.offers[o.token] = claim{peer: p, from: remote, expires: now.Add(offerTTL)}
	return o
}

// accept takes bulk connections until the listener closes.
func (s *Server) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: wait instead of spinning.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case s.bulk.hellos <- struct{}{}:
			go s.serveBulk(c)
		default:
			_ = c.Close()
		}
	}
}

// serveBulk reads c's hello and, if its token is good, serves it like a
// stream (without offers).
func (s *Server) serveBulk(c net.Conn) {
	defer c.Close()
	inHello := true
	defer func() {
		if inHello {
			<-s.bulk.hellos
		}
	}()
	_ = c.SetDeadline(time.Now().Add(s.bulk.helloTimeout))
	r := bufio.NewReaderSize(c, bufBytes)
	token, p, err := readHello(r)
	if err != nil {
		return
	}
	var from net.IP
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		from = a.IP
	}
	done, ok := s.claim(token, p, from, c)
	if !ok {
		_, _ = c.Write([]byte{statusDontHave})
		return
	}
	defer done()
	if _, err := c.Write([]byte{statusHave}); err != nil {
		return
	}
	<-s.bulk.hellos
	inHello = false
	rw := struct {
		io.Reader
		io.Writer
	}{r, c}
	_ = s.serve(context.Background(), rw, func() { _ = c.SetDeadline(time.Now().Add(idleTimeout)) }, nil)
}

// claim spends token (whatever the outcome: a token is tried once) and
// says whether p, connecting from from, may use it now: the token was
// issued to p for that IP, has not expired, p is under maxPeerBulk and a
// serving slot is free. done releases what an accepted claim holds.
func (s *Server) claim(token [tokenBytes]byte, p peer.ID, from net.IP, c net.Conn) (done func(), ok bool) {
	b := &s.bulk
	b.mu.Lock()
	defer b.mu.Unlock()
	cl, found := b.offers[token]
	delete(b.offers, token)
	if !found || b.closed || time.Now().After(cl.expires) || cl.peer != p || !cl.from.Equal(from) || b.active[p] >= maxPeerBulk {
		return nil, false
	}
	select {
	case s.slots <- struct{}{}:
	default:
		return nil, false
	}
	b.active[p]++
	b.conns[c] = struct{}{}
	return func() {
		<-s.slots
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.active[p]--; b.active[p] == 0 {
			delete(b.active, p)
		}
		delete(b.conns, c)
	}, true
}

// Close stops the bulk listeners and drops the bulk connections being
// served; streams are the host's to close.
func (s *Server) Close() error {
	b := &s.bulk
	b.mu.Lock()
	b.closed = true
	lns, conns := b.lns, b.conns
	b.lns, b.conns = map[string]net.Listener{}, map[net.Conn]struct{}{}
	b.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	for c := range conns {
		_ = c.Close()
	}
	return nil
}
