// Package transfer measures moving one checkpoint file between two
// swarmtrain hosts (node/p2p.NewHost: TCP, the node's security and muxer,
// its resource manager) over loopback, every way side by side in one run:
//
//	go test -run '^$' -bench . -benchtime 1x ./benchmarks/transfer/
//
// tcp             plain TCP copy of the same bytes (no libp2p): the machine's ceiling
// stream          one raw libp2p stream (security + yamux): the ceiling for any libp2p protocol
// bitswap         Exchange.File over bitswap with boxo's defaults
// bitswap-tuned   Exchange.File over bitswap with storage's options
// blocks          transfer.Fetch (/swarmtrain/blocks/1, transfer.Streams streams) into memory
// blocks-stored   Exchange.File over /swarmtrain/blocks/1, blocks stored in LevelDB
//
// Each iteration uses a fresh fetching host and store, so nothing is
// cached. Sizes: 50 MB and 500 MB (TRANSFER_SIZES=50,500 in MB to change).
// TRANSFER_STREAMS=1 adds blocks over 1, 2, 4 and 8 streams but
// transfer.Streams (which "blocks" uses).
// -cpuprofile works as usual (pick one path with -bench 'Transfer/500MB/blocks$').
package transfer

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

const rawProto = protocol.ID("/swarmtrain/bench/raw/1")

func newHost(b *testing.B) host.Host {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := p2p.NewHost(key, []string{"/ip4/127.0.0.1/tcp/0"}, p2p.HostConfig{Relay: p2p.RelayOff})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

var streamCounts = os.Getenv("TRANSFER_STREAMS") != ""

func sizes() []int {
	s := os.Getenv("TRANSFER_SIZES")
	if s == "" {
		s = "50,500"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			panic("TRANSFER_SIZES: " + err.Error())
		}
		out = append(out, n)
	}
	return out
}

func BenchmarkTransfer(b *testing.B) {
	for _, mb := range sizes() {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) { benchSize(b, mb*1_000_000) })
	}
}

func benchSize(b *testing.B, n int) {
	ctx := context.Background()
	data := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(data)

	// The serving host: bitswap (tuned or not) and the blocks protocol.
	srv := newHost(b)
	defer srv.Close()
	st, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	tuned := storage.NewExchange(ctx, srv, nil, st)
	root, err := tuned.AddFile(ctx, data)
	if err != nil {
		b.Fatal(err)
	}
	tuned.Close()
	srv.SetStreamHandler(rawProto, func(s network.Stream) {
		defer s.Close()
		_, _ = s.Write(data)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = c.Write(data) }()
		}
	}()
	check := func(b *testing.B, got []byte) {
		if len(got) != n {
			b.Fatalf("got %d bytes, want %d", len(got), n)
		}
	}
	readAll := func(b *testing.B, r io.Reader) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		check(b, buf)
	}

	b.Run("tcp", func(b *testing.B) {
		b.SetBytes(int64(n))
		for i := 0; i < b.N; i++ {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			readAll(b, c)
			c.Close()
		}
	})
	// fetchWith runs fetch from a fresh host connected to srv, timing the
	// fetch alone.
	fetchWith := func(b *testing.B, serve storage.ExchangeOptions, fetch func(b *testing.B, h host.Host, st *storage.Store) []byte) {
		e := storage.NewExchangeWith(ctx, srv, nil, st, serve)
		defer e.Close()
		b.SetBytes(int64(n))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			h := newHost(b)
			s, err := storage.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if err := h.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			check(b, fetch(b, h, s))
			b.StopTimer()
			s.Close()
			h.Close()
			b.StartTimer()
		}
	}
	b.Run("stream", func(b *testing.B) {
		fetchWith(b, storage.ExchangeOptions{NoTransfer: true}, func(b *testing.B, h host.Host, _ *storage.Store) []byte {
			s, err := h.NewStream(ctx, srv.ID(), rawProto)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			buf := make([]byte, n)
			if _, err := io.ReadFull(s, buf); err != nil {
				b.Fatal(err)
			}
			return buf
		})
	})
	viaExchange := func(client storage.ExchangeOptions) func(b *testing.B, h host.Host, s *storage.Store) []byte {
		return func(b *testing.B, h host.Host, s *storage.Store) []byte {
			e := storage.NewExchangeWith(ctx, h, nil, s, client)
			defer e.Close()
			got, err := e.File(ctx, root)
			if err != nil {
				b.Fatal(err)
			}
			return got
		}
	}
	b.Run("bitswap", func(b *testing.B) {
		o := storage.ExchangeOptions{NoTransfer: true, BitswapDefaults: true}
		fetchWith(b, o, viaExchange(o))
	})
	b.Run("bitswap-tuned", func(b *testing.B) {
		o := storage.ExchangeOptions{NoTransfer: true}
		fetchWith(b, o, viaExchange(o))
	})
	b.Run("blocks", func(b *testing.B) {
		fetchWith(b, storage.ExchangeOptions{}, func(b *testing.B, h host.Host, _ *storage.Store) []byte {
			f, err := transfer.Fetch(ctx, h, srv.ID(), root, 1<<40)
			if err != nil {
				b.Fatal(err)
			}
			return f.Data
		})
	})
	for _, k := range []int{1, 2, 4, 8} {
		if !streamCounts {
			break
		}
		if k == transfer.Streams {
			continue // that is "blocks"
		}
		b.Run(fmt.Sprintf("blocks-%dstreams", k), func(b *testing.B) {
			fetchWith(b, storage.ExchangeOptions{}, func(b *testing.B, h host.Host, _ *storage.Store) []byte {
				f, err := transfer.FetchStreams(ctx, h, srv.ID(), root, 1<<40, k)
				if err != nil {
					b.Fatal(err)
				}
				return f.Data
			})
		})
	}
	b.Run("blocks-stored", func(b *testing.B) {
		fetchWith(b, storage.ExchangeOptions{}, viaExchange(storage.ExchangeOptions{}))
	})
}
