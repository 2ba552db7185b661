package transfer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// bigFile is a file over bulkMinBytes in the checkpoint layout.
func bigFile(t testing.TB) ([]byte, blockstore.Blockstore, cid.Cid) {
	data := randomBytes(bulkMinBytes+3<<20+17, 5)
	bs, root := addFile(t, data, layout{chunk: 1 << 20, links: 1024, rawLeaves: true})
	return data, bs, root
}

// serving starts a host serving s and a second host connected to it.
func serving(t *testing.T, s *Server) (srv, cli host.Host) {
	t.Helper()
	mk := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	srv, cli = mk(), mk()
	srv.SetStreamHandler(ID, s.Handle)
	t.Cleanup(func() { s.Close() })
	if err := cli.Connect(context.Background(), peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		t.Fatal(err)
	}
	return srv, cli
}

// TestFetchOverBulk: a big file comes over a bulk TCP connection, a server
// that declines offers serves it over the stream, and both are the file.
func TestFetchOverBulk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data, bs, root := bigFile(t)
	for _, bulk := range []bool{true, false} {
		s := NewServer(bs)
		if !bulk {
			s.NoBulk()
		}
		srv, cli := serving(t, s)
		f, err := Fetch(ctx, cli, srv.ID(), root, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Data, data) {
			t.Fatal("the file differs")
		}
		if f.Bulk != bulk {
			t.Fatalf("server offering bulk: %v; the file came over bulk: %v", bulk, f.Bulk)
		}
	}
}

// TestBulkFallsBack: an offer whose listener refuses the connection leaves
// the fetch on the stream it asked on.
func TestBulkFallsBack(t *testing.T) {
	defer func(l func(net.IP) (net.Listener, error)) { listenTCP = l }(listenTCP)
	listenTCP = func(ip net.IP) (net.Listener, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err == nil {
			ln.Close() // the port is offered, but nothing listens there
		}
		return ln, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data, bs, root := bigFile(t)
	srv, cli := serving(t, NewServer(bs))
	f, err := Fetch(ctx, cli, srv.ID(), root, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Data, data) || f.Bulk {
		t.Fatalf("fallback: the file matches: %v, came over bulk: %v", bytes.Equal(f.Data, data), f.Bulk)
	}
}

// TestFetchPastAServerWithoutBulk: a server that resets the stream on an
// offer request (one from before the bulk channel) still serves the file,
// over a fresh stream.
func TestFetchPastAServerWithoutBulk(t *testing.T) {
	data, bs, root := bigFile(t)
	asked := 0
	upgrade := func(*conn) (*conn, error) {
		asked++
		return nil, errors.New("stream reset")
	}
	f, err := fetchWith(pipeDial(bs), upgrade, root, 1<<30, 1)
	if err != nil || !bytes.Equal(f.Data, data) || asked != 1 {
		t.Fatalf("got %v, file matches %v, asked %d times for bulk", err, f != nil && bytes.Equal(f.Data, data), asked)
	}
}

// TestBulkRefusesCorruption: a server that alters one byte of a leaf on
// the bulk connection fails the fetch with a hash mismatch; nothing of
// the altered block is returned.
func TestBulkRefusesCorruption(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, bs, root := bigFile(t)
	srv, cli := serving(t, NewServer(bs))
	f, err := Fetch(ctx, cli, srv.ID(), root, 1<<30)
	if err != nil || !f.Bulk {
		t.Fatalf("honest server: %v, bulk %v", err, f != nil && f.Bulk)
	}
	var leaf cid.Cid
	for _, b := range f.Blocks {
		if b.Cid().Prefix().Codec == cid.Raw {
			leaf = b.Cid()
		}
	}
	srv2, cli2 := serving(t, NewServer(liar{bs, leaf}))
	if _, err := Fetch(ctx, cli2, srv2.ID(), root, 1<<30); err == nil || !strings.Contains(err.Error(), "hash to") {
		t.Fatalf("altered leaf over bulk: got %v, want a hash mismatch", err)
	}
}

// TestBulkTokenMisuse: a token works once, for the peer it was issued to,
// from the IP it was issued for, before it expires; anything else is
// refused (and spends the token).
func TestBulkTokenMisuse(t *testing.T) {
	_, bs, root := bigFile(t)
	s := NewServer(bs)
	defer s.Close()
	alice, bob := newPeer(t), newPeer(t)
	lo := net.IPv4(127, 0, 0, 1)
	// present connects to o and sends a hello; it returns the server's
	// status byte and the connection, or 0xff if the server hung up.
	present := func(o *offer, token [tokenBytes]byte, p peer.ID) (byte, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", net.JoinHostPort(o.ip.String(), strconv.Itoa(o.port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := writeHello(c, token, p); err != nil {
			t.Fatal(err)
		}
		var st [1]byte
		if _, err := c.Read(st[:]); err != nil {
			return 0xff, c
		}
		return st[0], c
	}
	refused := func(what string, st byte) {
		t.Helper()
		if st != statusDontHave {
			t.Errorf("%s: status %d, want refused", what, st)
		}
	}

	o := s.offerTo(alice, lo, lo)
	refused("bob with alice's token", first(present(o, o.token, bob)))
	refused("alice after bob spent her token", first(present(o, o.token, alice)))

	o = s.offerTo(alice, lo, lo)
	st, c := present(o, o.token, alice)
	if st != statusHave {
		t.Fatalf("alice with her token: status %d", st)
	}
	// The accepted connection serves blocks like a stream.
	w := bufio.NewWriter(c)
	r := bufio.NewReader(c)
	if err := writeRequest(w, []cid.Cid{root}); err != nil {
		t.Fatal(err)
	}
	if have, n, err := readBlockHeader(r, MaxBlockBytes); err != nil || !have || n == 0 {
		t.Fatalf("root over bulk: have %v, %d bytes, %v", have, n, err)
	}
	refused("alice reusing her token", first(present(o, o.token, alice)))

	var guess [tokenBytes]byte
	refused("a made-up token", first(present(o, guess, alice)))

	o = s.offerTo(alice, lo, net.IPv4(10, 9, 9, 9))
	refused("alice's token from another IP", first(present(o, o.token, alice)))

	defer func(d time.Duration) { offerTTL = d }(offerTTL)
	offerTTL = -time.Second // issued already expired
	o = s.offerTo(alice, lo, lo)
	refused("an expired token", first(present(o, o.token, alice)))
	offerTTL = time.Minute

	// One peer holds at most maxPeerOffers unused tokens.
	for i := 0; i < maxPeerOffers; i++ {
		if s.offerTo(bob, lo, lo) == nil {
			t.Fatalf("offer %d to bob refused", i)
		}
	}
	if s.offerTo(bob, lo, lo) != nil {
		t.Errorf("bob got more than %d outstanding offers", maxPeerOffers)
	}
}

func first(st byte, _ net.Conn) byte { return st }

// TestBulkDropsSilentConnections: a connection that presents no hello is
// closed after helloTimeout, and one over maxHellos waiting is closed at
// once, so port scanners cannot hold the server's sockets.
func TestBulkDropsSilentConnections(t *testing.T) {
	_, bs, _ := bigFile(t)
	s := NewServer(bs)
	defer s.Close()
	s.bulk.helloTimeout = 2 * time.Second
	lo := net.IPv4(127, 0, 0, 1)
	o := s.offerTo(newPeer(t), lo, lo)
	addr := net.JoinHostPort(o.ip.String(), strconv.Itoa(o.port))
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	var silent []net.Conn
	for i := 0; i < maxHellos; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// The server counts a connection once its accept loop has taken it;
	// wait until all maxHellos are held, then one more is turned away.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.bulk.hellos) < maxHellos {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d silent connections taken", len(s.bulk.hellos), maxHellos)
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedWithin(extra, time.Second) {
		t.Error("a connection over maxHellos was kept waiting")
	}
	for i, c := range silent {
		if !closedWithin(c, 10*time.Second) {
			t.Fatalf("silent connection %d still open after helloTimeout", i)
		}
	}
}

func newPeer(t *testing.T) peer.ID {
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzBulkFrames feeds hostile bytes to the offer decoder (the requester
// reads it from a server) and the hello decoder (the server reads it from
// anyone who connects): they fail cleanly, or return values within their
// bounds that survive being written and read again.
func FuzzBulkFrames(f *testing.F) {
	var good bytes.Buffer
	w := bufio.NewWriter(&good)
	_ = writeOffer(w, &offer{ip: net.IPv4(127, 0, 0, 1), port: 4001})
	f.Add(good.Bytes())
	good.Reset()
	p, _ := peer.Decode("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
	_ = writeHello(&good, [tokenBytes]byte{1}, p)
	f.Add(good.Bytes())
	f.Add([]byte{statusDontHave})
	f.Add([]byte{statusOffer, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if o, err := readOffer(bufio.NewReader(bytes.NewReader(b))); err == nil && o != nil {
			if o.port < 1 || o.port > 65535 || (len(o.ip) != 4 && len(o.ip) != 16) {
				t.Fatalf("accepted offer %+v", o)
			}
			var re bytes.Buffer
			rw := bufio.NewWriter(&re)
			if err := writeOffer(rw, o); err != nil {
				t.Fatal(err)
			}
			o2, err := readOffer(bufio.NewReader(&re))
			if err != nil || o2 == nil || o2.token != o.token || !o2.ip.Equal(o.ip) || o2.port != o.port {
				t.Fatalf("offer %+v read back as %+v, %v", o, o2, err)
			}
		}
		if token, p, err := readHello(bufio.NewReader(bytes.NewReader(b))); err == nil {
			var re bytes.Buffer
			if err := writeHello(&re, token, p); err != nil {
				t.Fatal(err)
			}
			token2, p2, err := readHello(bufio.NewReader(&re))
			if err != nil || token2 != token || p2 != p {
				t.Fatalf("hello (%x, %s) read back as (%x, %s), %v", token, p, token2, p2, err)
			}
		}
	})
}
