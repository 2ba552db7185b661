package storage

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	mh "github.com/multiformats/go-multihash"

	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

// racePeer is a mocknet host with a store and an exchange.
type racePeer struct {
	h  host.Host
	s  *Store
	ex *Exchange
}

func newRacePeers(t *testing.T, ctx context.Context, mn mocknet.Mocknet, n int) []racePeer {
	t.Helper()
	out := make([]racePeer, n)
	for i := range out {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ex := NewExchange(ctx, h, nil, s)
		t.Cleanup(func() { ex.Close() })
		out[i] = racePeer{h: h, s: s, ex: ex}
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return out
}

// connect connects a to each of bs and waits for identify to tell a that
// they speak the transfer protocol (what a node learns on connecting).
func connect(t *testing.T, ctx context.Context, mn mocknet.Mocknet, a host.Host, bs ...host.Host) {
	t.Helper()
	for _, b := range bs {
		if _, err := mn.ConnectPeers(a.ID(), b.ID()); err != nil {
			t.Fatal(err)
		}
		for {
			if s, _ := a.Peerstore().SupportsProtocols(b.ID(), transfer.ID); len(s) > 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("identify never named %s's protocols", b.ID())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

func payloadBlock(t *testing.T, n int) blocks.Block {
	t.Helper()
	d := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range d {
		d[i] = byte(r.Uint32())
	}
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(d, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGetFromRacesHolders: the payload's author, named first, sits on a
// link too slow to send it within the test's deadline; after hedgeDelay a
// peer serving altered bytes is asked (and fails at once), then a fast
// peer that holds it answers.
func TestGetFromRacesHolders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	ps := newRacePeers(t, ctx, mn, 3)
	fetcher, author, holder := ps[0], ps[1], ps[2]
	// The liar serves every block with one bit flipped.
	liarHost, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	b := payloadBlock(t, 1<<20)
	for _, p := range []racePeer{author, holder} {
		if err := p.s.Blockstore().Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	liarHost.SetStreamHandler(transfer.ID, transfer.NewServer(flipper{b}).Handle)
	// 1 MiB at 16 KiB/s is a minute: longer than the test's deadline.
	for _, l := range mn.LinksBetweenPeers(fetcher.h.ID(), author.h.ID()) {
		l.SetOptions(mocknet.LinkOptions{Bandwidth: 16 << 10})
	}
	connect(t, ctx, mn, fetcher.h, author.h, holder.h, liarHost)

	got, err := fetcher.ex.GetFrom(ctx, b.Cid(), []peer.ID{author.h.ID(), liarHost.ID(), holder.h.ID()}, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.RawData(), b.RawData()) {
		t.Fatal("fetched bytes differ from the payload")
	}
	if have, _ := fetcher.s.Has(ctx, b.Cid()); !have {
		t.Fatal("the fetched payload was not stored")
	}
	if n := fetcher.ex.directFetches.Load(); n != 1 {
		t.Fatalf("%d direct fetches, want 1", n)
	}
	// A connected peer that holds a payload but is not named is not asked
	// over the transfer protocol (bitswap may still find it).
	other := payloadBlock(t, 100<<10)
	if err := holder.s.Blockstore().Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
	defer ocancel()
	_, _ = fetcher.ex.GetFrom(octx, other.Cid(), nil, 2<<20)
	if n := fetcher.ex.directFetches.Load(); n != 1 {
		t.Fatalf("%d direct fetches, want still 1: a peer not named was asked", n)
	}
}

// TestGetFromRefuses: a copy over the size cap, or only altered copies,
// give an error within the caller's deadline and store nothing.
func TestGetFromRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	ps := newRacePeers(t, ctx, mn, 2)
	fetcher, holder := ps[0], ps[1]
	liarHost, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	big := payloadBlock(t, 64<<10)
	if err := holder.s.Blockstore().Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	lied := payloadBlock(t, 1000)
	liarHost.SetStreamHandler(transfer.ID, transfer.NewServer(flipper{lied}).Handle)
	connect(t, ctx, mn, fetcher.h, holder.h, liarHost)

	for name, tc := range map[string]struct {
		c   cid.Cid
		max int64
	}{"oversized": {big.Cid(), 1 << 10}, "altered": {lied.Cid(), 2 << 20}} {
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := fetcher.ex.GetFrom(fctx, tc.c, []peer.ID{holder.h.ID(), liarHost.ID()}, tc.max)
		fcancel()
		if err == nil {
			t.Fatalf("%s: fetched", name)
		}
		if have, _ := fetcher.s.Has(ctx, tc.c); have {
			t.Fatalf("%s: stored", name)
		}
	}
}

// flipper serves b with one bit flipped under b's CID.
type flipper struct{ b blocks.Block }

func (f flipper) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	if !c.Equals(f.b.Cid()) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	d := append([]byte(nil), f.b.RawData()...)
	d[len(d)/2] ^= 1
	return blocks.NewBlockWithCid(d, c)
}
