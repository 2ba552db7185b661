// Package holders measures fetching one contribution's payload (a raw
// block above compression.inline_max_bytes) when its author sits on a slow
// link, with 1 holder (the author alone) and with N holders (the author
// and N-1 peers on fast links that already have it; N = 2 is a contributor
// replaying a round, which names the author and the coordinator),
// on mocknet, side by side in one run:
//
//	go test -run '^$' -bench . -benchtime 5x ./benchmarks/holders/
//
// bitswap     Exchange.Get: bitswap, today's path before GetFrom
// getfrom     Exchange.GetFrom: /swarmtrain/blocks/1 from the holders, hedged (the author last)
//
// Links: the author's 150 ms / 2 Mbit (HOLDERS_SLOW_MBIT), everyone
// else's 50 ms / 100 Mbit; payload 1 MiB (HOLDERS_KIB). Each iteration
// uses a fresh fetching peer, so nothing is cached.
package holders

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/transfer"
	"github.com/swarmtrain/swarmtrain/verify"
)

func envInt(name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			panic(name + ": " + err.Error())
		}
		return n
	}
	return def
}

type peerEx struct {
	h  host.Host
	s  *storage.Store
	ex *storage.Exchange
}

func newPeer(b *testing.B, ctx context.Context, mn mocknet.Mocknet) peerEx {
	h, err := mn.GenPeer()
	if err != nil {
		b.Fatal(err)
	}
	s, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ex := storage.NewExchange(ctx, h, nil, s)
	b.Cleanup(func() { ex.Close() })
	return peerEx{h: h, s: s, ex: ex}
}

func BenchmarkPayloadFetch(b *testing.B) {
	kib := envInt("HOLDERS_KIB", 1024)
	slow := float64(envInt("HOLDERS_SLOW_MBIT", 2))
	d := make([]byte, kib<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range d {
		d[i] = byte(r.Uint32())
	}
	c, err := verify.PayloadCID(d)
	if err != nil {
		b.Fatal(err)
	}
	blk, _ := blocks.NewBlockWithCid(d, c)
	for _, n := range []int{1, 2, 4} {
		for _, path := range []string{"bitswap", "getfrom"} {
			b.Run(fmt.Sprintf("holders=%d/%s", n, path), func(b *testing.B) {
				benchFetch(b, blk, n, path, slow)
			})
		}
	}
}

func benchFetch(b *testing.B, blk blocks.Block, n int, path string, slowMbit float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mn := mocknet.New()
	defer mn.Close()
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: 50 * time.Millisecond, Bandwidth: 100e6 / 8})
	holders := make([]peerEx, n) // holders[0] is the author
	ids := make([]peer.ID, n)
	for i := range holders {
		holders[i] = newPeer(b, ctx, mn)
		ids[i] = holders[i].h.ID()
		if err := holders[i].s.Blockstore().Put(ctx, blk); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(blk.RawData())))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		f := newPeer(b, ctx, mn)
		if err := mn.LinkAll(); err != nil {
			b.Fatal(err)
		}
		for _, l := range mn.LinksBetweenPeers(f.h.ID(), ids[0]) {
			l.SetOptions(mocknet.LinkOptions{Latency: 150 * time.Millisecond, Bandwidth: slowMbit * 1e6 / 8})
		}
		for _, id := range ids {
			if _, err := mn.ConnectPeers(f.h.ID(), id); err != nil {
				b.Fatal(err)
			}
			for len(must(f.h.Peerstore().SupportsProtocols(id, transfer.ID))) == 0 {
				time.Sleep(5 * time.Millisecond) // identify; not timed
			}
		}
		b.StartTimer()
		var got blocks.Block
		var err error
		if path == "bitswap" {
			got, err = f.ex.Get(ctx, blk.Cid())
		} else {
			// The author last, as a replaying contributor names it
			// (after the coordinator).
			got, err = f.ex.GetFrom(ctx, blk.Cid(), append(slices.Clone(ids[1:]), ids[0]), int64(len(blk.RawData())))
		}
		if err != nil {
			b.Fatal(err)
		}
		if !got.Cid().Equals(blk.Cid()) {
			b.Fatal("wrong block")
		}
		b.StopTimer()
		_ = f.ex.Close()
		_ = f.h.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/fetch")
}

func must[T any](v T, _ error) T { return v }
