// Package transfer measures moving one checkpoint file between two
// swarmtrain hosts (node/p2p.NewHost: TCP, the node's security and muxer,
// its resource manager) over loopback, every way side by side in one run:
//
//	go test -run '^$' -bench . -benchtime 1x ./benchmarks/transfer/
//
// tcp             plain TCP copy of the same bytes (no libp2p): the machine's ceiling
// stream          one raw libp2p stream (TLS + yamux): the ceiling for any libp2p protocol
// stream-noise    the same with Noise instead of TLS (fetching host from libp2p.New)
// stream-yamux16M the same with yamux windows starting at 16 MiB (not 256 KiB)
// stream-quic     the same over QUIC (its own TLS and stream muxing)
// bitswap         Exchange.File over bitswap with boxo's defaults
// bitswap-tuned   Exchange.File over bitswap with storage's options
// blocks          transfer.Fetch (/swarmtrain/blocks/1, transfer.Streams streams) into memory,
//
//	over the bulk TCP connection the server offers (what nodes do)
//
// blocks-stream   the same with the server offering no bulk connection: on the libp2p stream
// blocks-stored   Exchange.File over /swarmtrain/blocks/1 (bulk), blocks stored in LevelDB
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
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	yamux "github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/swarmtrain/swarmtrain/node/p2p"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

const rawProto = protocol.ID("/swarmtrain/bench/raw/1")

func newHost(b *testing.B) host.Host {
	return newHostOn(b, "/ip4/127.0.0.1/tcp/0")
}

func newHostOn(b *testing.B, listen ...string) host.Host {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		b.Fatal(err)
	}
	h, err := p2p.NewHost(key, listen, p2p.HostConfig{Relay: p2p.RelayOff})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// variantHost is a fetching host that differs from the node's in one
// option (the stream-* paths: which one lifts the libp2p ceiling).
func variantHost(b *testing.B, opts ...libp2p.Option) host.Host {
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0")}, opts...)...)
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

// cpuClock sums the process's CPU time (user + system; both hosts share
// the process) over the timed part of each iteration, reported as CPU
// seconds per GB moved: on a machine shared with other jobs it moves far
// less than MB/s does, and 2 / (cpu-s/GB) is the GB/s two idle cores
// could reach if the work spread over both.
type cpuClock struct{ total, start time.Duration }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuClock) on()  { c.start = cpuNow() }
func (c *cpuClock) off() { c.total += cpuNow() - c.start }
func (c *cpuClock) report(b *testing.B, n int) {
	b.ReportMetric(c.total.Seconds()/(float64(b.N)*float64(n)/1e9), "cpu-s/GB")
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
	srv := newHostOn(b, "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
	defer srv.Close()
	st, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// The server holds the file in memory as a coordinator holds its newest
	// checkpoint (two checkpoints' worth); "blocks-cold" reads it from disk.
	st.SetHotBytes(2*n + 1<<20)
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
		var cpu cpuClock
		for i := 0; i < b.N; i++ {
			cpu.on()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			readAll(b, c)
			c.Close()
			cpu.off()
		}
		cpu.report(b, n)
	})
	// fetchWith runs fetch from a fresh host connected to srv, timing the
	// fetch alone.
	addrs := func(proto int) []ma.Multiaddr {
		var out []ma.Multiaddr
		for _, a := range srv.Addrs() {
			if _, err := a.ValueForProtocol(proto); err == nil {
				out = append(out, a)
			}
		}
		return out
	}
	// rawStream reads the file from one raw stream of a fresh host made by
	// mk, connected to srv over addresses with protocol proto.
	rawStream := func(b *testing.B, proto int, mk func(b *testing.B) host.Host) {
		b.SetBytes(int64(n))
		buf := make([]byte, n)
		var cpu cpuClock
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			h := mk(b)
			if err := h.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: addrs(proto)}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			cpu.on()
			s, err := h.NewStream(ctx, srv.ID(), rawProto)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(s, buf); err != nil {
				b.Fatal(err)
			}
			s.Close()
			cpu.off()
			b.StopTimer()
			h.Close()
			b.StartTimer()
		}
		cpu.report(b, n)
	}
	fetchWith := func(b *testing.B, serve storage.ExchangeOptions, fetch func(b *testing.B, h host.Host, st *storage.Store) []byte) {
		e := storage.NewExchangeWith(ctx, srv, nil, st, serve)
		defer e.Close()
		b.SetBytes(int64(n))
		b.ResetTimer()
		var cpu cpuClock
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			h := newHost(b)
			s, err := storage.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if err := h.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: addrs(ma.P_TCP)}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			cpu.on()
			check(b, fetch(b, h, s))
			cpu.off()
			b.StopTimer()
			s.Close()
			h.Close()
			b.StartTimer()
		}
		cpu.report(b, n)
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
	b.Run("stream-noise", func(b *testing.B) {
		rawStream(b, ma.P_TCP, func(b *testing.B) host.Host {
			return variantHost(b, libp2p.Security(noise.ID, noise.New))
		})
	})
	b.Run("stream-yamux16M", func(b *testing.B) {
		// Each stream's flow-control window starts at 16 MiB, not 256 KiB.
		t := *yamux.DefaultTransport
		t.InitialStreamWindowSize = 16 << 20
		rawStream(b, ma.P_TCP, func(b *testing.B) host.Host {
			return variantHost(b, libp2p.Muxer(yamux.ID, &t))
		})
	})
	b.Run("stream-quic", func(b *testing.B) {
		rawStream(b, ma.P_QUIC_V1, func(b *testing.B) host.Host {
			return newHostOn(b, "/ip4/127.0.0.1/udp/0/quic-v1")
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
	blocksPath := func(bulk bool) func(b *testing.B) {
		return func(b *testing.B) {
			fetchWith(b, storage.ExchangeOptions{NoBulk: !bulk}, func(b *testing.B, h host.Host, _ *storage.Store) []byte {
				f, err := transfer.Fetch(ctx, h, srv.ID(), root, 1<<40)
				if err != nil {
					b.Fatal(err)
				}
				if f.Bulk != bulk {
					b.Fatalf("came over bulk: %v, want %v", f.Bulk, bulk)
				}
				return f.Data
			})
		}
	}
	b.Run("blocks", blocksPath(true))
	b.Run("blocks-cold", func(b *testing.B) {
		st.SetHotBytes(0) // every block from LevelDB, as after a restart
		defer st.SetHotBytes(2*n + 1<<20)
		blocksPath(true)(b)
	})
	b.Run("blocks-stream", blocksPath(false))
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
