package transfer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// layout is one way an importer may cut a file.
type layout struct {
	chunk, links int
	rawLeaves    bool
}

// addFile stores data as a balanced UnixFS DAG in a fresh blockstore.
func addFile(t testing.TB, data []byte, l layout) (blockstore.Blockstore, cid.Cid) {
	t.Helper()
	bs := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	dag := merkledag.NewDAGService(blockservice.New(bs, nil))
	p := helpers.DagBuilderParams{
		Dagserv:    dag,
		Maxlinks:   l.links,
		RawLeaves:  l.rawLeaves,
		CidBuilder: cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256},
	}
	db, err := p.New(chunker.NewSizeSplitter(bytes.NewReader(data), int64(l.chunk)))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	return bs, nd.Cid()
}

// pipeDial serves g on the other end of an in-memory pipe per stream.
func pipeDial(g Getter) func() (io.ReadWriter, error) {
	s := NewServer(g)
	return func() (io.ReadWriter, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			_ = s.serve(context.Background(), b, func() {}, nil)
		}()
		return a, nil
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestFetchEveryLayout(t *testing.T) {
	layouts := []layout{
		{chunk: 1 << 20, links: 1024, rawLeaves: true},                           // Kubo's unixfs-v1-2025
		{chunk: 256 << 10, links: helpers.DefaultLinksPerBlock, rawLeaves: true}, // Kubo's default
		{chunk: 1024, links: 3, rawLeaves: true},                                 // deep
		{chunk: 1000, links: 4, rawLeaves: false},                                // dag-pb leaves
	}
	sizes := []int{0, 1, 1000, 1024, 4097, 70_000, 3<<20 + 5}
	for _, l := range layouts {
		for _, n := range sizes {
			data := randomBytes(n, uint64(n))
			bs, root := addFile(t, data, l)
			for _, streams := range []int{1, 4} {
				f, err := fetch(pipeDial(bs), root, 1<<30, streams)
				if err != nil {
					t.Fatalf("%+v, %d bytes, %d streams: %v", l, n, streams, err)
				}
				if !bytes.Equal(f.Data, data) {
					t.Fatalf("%+v, %d bytes: the file differs", l, n)
				}
				keys, _ := bs.AllKeysChan(context.Background())
				stored := 0
				for range keys {
					stored++
				}
				got := map[cid.Cid]bool{}
				for _, b := range f.Blocks {
					got[b.Cid()] = true
					if want, _ := b.Cid().Prefix().Sum(b.RawData()); !want.Equals(b.Cid()) {
						t.Fatalf("block %s does not hash to its CID", b.Cid())
					}
				}
				if len(got) != stored {
					t.Fatalf("%+v, %d bytes: %d distinct blocks, the DAG has %d", l, n, len(got), stored)
				}
			}
		}
	}
}

// liar serves one block altered.
type liar struct {
	Getter
	victim cid.Cid
}

func (l liar) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	b, err := l.Getter.Get(ctx, c)
	if err != nil || !c.Equals(l.victim) {
		return b, err
	}
	d := append([]byte(nil), b.RawData()...)
	d[len(d)/2] ^= 1
	return blocks.NewBlockWithCid(d, c)
}

// forgetful lacks one block.
type forgetful struct {
	Getter
	victim cid.Cid
}

func (f forgetful) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if c.Equals(f.victim) {
		return nil, errors.New("not here")
	}
	return f.Getter.Get(ctx, c)
}

func TestFetchRefusesWhatDoesNotCheck(t *testing.T) {
	data := randomBytes(10_000, 7)
	bs, root := addFile(t, data, layout{chunk: 1024, links: 4, rawLeaves: true})
	f, err := fetch(pipeDial(bs), root, 1<<30, 4)
	if err != nil {
		t.Fatal(err)
	}
	var leaf, inner cid.Cid
	for _, b := range f.Blocks {
		switch {
		case b.Cid().Prefix().Codec == cid.Raw:
			leaf = b.Cid()
		case !b.Cid().Equals(root):
			inner = b.Cid()
		}
	}
	for _, victim := range []cid.Cid{root, inner, leaf} {
		if _, err := fetch(pipeDial(liar{bs, victim}), root, 1<<30, 4); err == nil || !strings.Contains(err.Error(), "hash to") {
			t.Errorf("altered %s: got %v, want a hash mismatch", victim, err)
		}
		if _, err := fetch(pipeDial(forgetful{bs, victim}), root, 1<<30, 4); !errors.Is(err, ErrDontHave) {
			t.Errorf("missing %s: got %v, want ErrDontHave", victim, err)
		}
	}
	if _, err := fetch(pipeDial(bs), root, 9_999, 4); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("a 10,000-byte file under a 9,999-byte cap: got %v", err)
	}
}

func TestServerRefusesMalformedRequests(t *testing.T) {
	bs, root := addFile(t, randomBytes(100, 1), layout{chunk: 1024, links: 4, rawLeaves: true})
	s := NewServer(bs)
	for name, req := range map[string][]byte{
		"too many CIDs":  {0x81, 0x08}, // 1025
		"empty CID":      {1, 0},
		"oversized CID":  {1, 0xa9, 0x01}, // 169 bytes
		"truncated CID":  append([]byte{1, 36}, root.Bytes()[:10]...),
		"garbage CID":    {1, 3, 0xff, 0xff, 0xff},
		"truncated list": append(append([]byte{2, byte(len(root.Bytes()))}, root.Bytes()...), 5),
	} {
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(req), &out}
		if err := s.serve(context.Background(), rw, func() {}, nil); !errors.Is(err, errFrame) {
			t.Errorf("%s: got %v, want a malformed frame", name, err)
		}
	}
	// Zero CIDs ask for a bulk connection: where none can be offered (a
	// pipe, a bulk connection itself) the answer is "no offer".
	var out bytes.Buffer
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader([]byte{0}), &out}
	if err := s.serve(context.Background(), rw, func() {}, nil); err != nil || !bytes.Equal(out.Bytes(), []byte{statusDontHave}) {
		t.Errorf("offer request without a stream: got %v and % x, want no offer", err, out.Bytes())
	}
}

// TestFetchOverLibp2p runs the protocol between two real hosts.
func TestFetchOverLibp2p(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	data := randomBytes(3<<20+17, 3)
	bs, root := addFile(t, data, layout{chunk: 256 << 10, links: 174, rawLeaves: true})
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetStreamHandler(ID, NewServer(bs).Handle)
	b, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	f, err := Fetch(ctx, b, a.ID(), root, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Data, data) {
		t.Fatal("the file differs")
	}
	// A peer without the protocol: an error naming it, no hang.
	a.RemoveStreamHandler(ID)
	if _, err := Fetch(ctx, b, a.ID(), root, 1<<30); err == nil || !strings.Contains(err.Error(), a.ID().String()) {
		t.Fatalf("fetch from a peer without the protocol: got %v, want an error naming it", err)
	}
}

// FuzzReadRequest feeds hostile bytes to the server's request decoder.
func FuzzReadRequest(f *testing.F) {
	c, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte("x"))
	var good bytes.Buffer
	w := bufio.NewWriter(&good)
	_ = writeRequest(w, []cid.Cid{c, c})
	f.Add(good.Bytes())
	f.Add([]byte{0})
	f.Add([]byte{0x81, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		cids, err := readRequest(bufio.NewReader(bytes.NewReader(b)))
		if err == nil && len(cids) > MaxWant {
			t.Fatalf("accepted %d CIDs", len(cids))
		}
	})
}

// FuzzFetchResponse feeds hostile response bytes to the requester: it
// must fail cleanly or return exactly the file the root names.
func FuzzFetchResponse(f *testing.F) {
	data := randomBytes(5000, 9)
	bs, root := addFile(f, data, layout{chunk: 1024, links: 3, rawLeaves: true})
	// Seeds: the honest responses of a one-stream fetch, and cut versions.
	// The server records a response before sending it, so the recording is
	// complete once the fetch has read it.
	var rec bytes.Buffer
	s := NewServer(bs)
	dial := func() (io.ReadWriter, error) {
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			_ = s.serve(context.Background(), struct {
				io.Reader
				io.Writer
			}{b, io.MultiWriter(&rec, b)}, func() {}, nil)
		}()
		return a, nil
	}
	if _, err := fetch(dial, root, 1<<20, 1); err != nil {
		f.Fatal(err)
	}
	honest := rec.Bytes()
	f.Add(honest)
	f.Add(honest[:len(honest)/2])
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, resp []byte) {
		r := bytes.NewReader(resp)
		dial := func() (io.ReadWriter, error) {
			return struct {
				io.Reader
				io.Writer
			}{r, io.Discard}, nil
		}
		got, err := fetch(dial, root, 1<<20, 1)
		if err == nil && !bytes.Equal(got.Data, data) {
			t.Fatal("accepted a file that is not the root's")
		}
	})
}

// TestStalledPeerFailsTheFetch: a peer that takes the request and then
// sends nothing fails the fetch after idleTimeout, not at the caller's
// deadline, so the caller can still fall back to bitswap.
func TestStalledPeerFailsTheFetch(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	release := make(chan struct{})
	defer close(release)
	a.SetStreamHandler(ID, func(s network.Stream) {
		_, _ = readRequest(bufio.NewReader(s))
		<-release // stall: never answer
		_ = s.Reset()
	})
	b, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	root, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte("x"))
	began := time.Now()
	_, err = Fetch(ctx, b, a.ID(), root, 1<<20)
	if err == nil || !strings.Contains(err.Error(), a.ID().String()) {
		t.Fatalf("fetch from a stalled peer: got %v, want an error naming it", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the fetch ran to the caller's deadline (%s) instead of the stall timeout", time.Since(began))
	}
}
