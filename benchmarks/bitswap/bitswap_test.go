// Package bitswap measures fetching a 50 MB checkpoint by CID between two
// real libp2p hosts over loopback TCP:
//
//	go test -run '^$' -bench . -benchtime 3x ./benchmarks/bitswap/
package bitswap

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
)

func BenchmarkFetchCheckpoint50MB(b *testing.B) {
	ctx := context.Background()
	const elems = 50_000_000 / 4
	r := rand.New(rand.NewPCG(1, 1))
	v := make([]float32, elems)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	sa, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer sa.Close()
	ea := storage.NewExchange(ctx, a, nil, sa)
	defer ea.Close()
	c, err := ea.PutCheckpoint(ctx, []safetensors.Tensor{{Name: "w", Shape: []int{elems}, Data: v}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * elems)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// A fresh fetcher each time: nothing cached.
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			b.Fatal(err)
		}
		s, err := storage.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		e := storage.NewExchange(ctx, h, nil, s)
		if err := h.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := e.File(ctx, c)
		if err != nil || len(got) < 4*elems {
			b.Fatalf("fetch: %v (%d bytes)", err, len(got))
		}
		b.StopTimer()
		e.Close()
		s.Close()
		h.Close()
		b.StartTimer()
	}
}
