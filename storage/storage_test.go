package storage

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/swarmtrain/swarmtrain/storage/safetensors"
)

func TestStoreSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := blocks.NewBlock([]byte("a round record"))
	if err := s.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHead(ctx, "ledger", b.Cid()); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, b.Cid())
	if err != nil || !bytes.Equal(got.RawData(), b.RawData()) {
		t.Fatalf("block after restart: %v", err)
	}
	h, err := s.Head(ctx, "ledger")
	if err != nil || !h.Equals(b.Cid()) {
		t.Fatalf("head after restart: %v %v", h, err)
	}
	if _, err := s.Head(ctx, "nope"); !errors.Is(err, ErrNoHead) {
		t.Fatalf("missing head: %v", err)
	}
}

func TestOpenTwiceNamesTheDir(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "blocks")) {
		t.Fatalf("second open: %v", err)
	}
}

func loopbackHost(t testing.TB) host.Host {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// bigCheckpoint makes n float32s of checkpoint in a few named tensors.
func bigCheckpoint(n int) []safetensors.Tensor {
	r := rand.New(rand.NewPCG(1, 1))
	mk := func(name string, shape ...int) safetensors.Tensor {
		size := 1
		for _, s := range shape {
			size *= s
		}
		v := make([]float32, size)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return safetensors.Tensor{Name: name, Shape: shape, Data: v}
	}
	return []safetensors.Tensor{mk("layers.0.weight", n/1000, 999), mk("layers.0.bias", n/1000), mk("extra", n/1000)}
}

func TestCheckpointFetchedOverBitswap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := loopbackHost(t), loopbackHost(t)
	sa, _ := Open(t.TempDir())
	sb, _ := Open(t.TempDir())
	defer sa.Close()
	defer sb.Close()
	ea, eb := NewExchange(ctx, a, nil, sa), NewExchange(ctx, b, nil, sb)
	defer ea.Close()
	defer eb.Close()

	tensors := bigCheckpoint(5_000_000) // 20 MB of float32
	c, err := ea.PutCheckpoint(ctx, tensors, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := safetensors.Encode(tensors, map[string]string{"format": "pt"})
	if fc, _ := FileCID(want); !fc.Equals(c) {
		t.Fatalf("FileCID %s differs from the stored file's %s", fc, c)
	}
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	got, err := eb.File(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fetched %d bytes, not identical to the %d written", len(got), len(want))
	}
	ts, meta, err := safetensors.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || meta["format"] != "pt" {
		t.Fatalf("header: %d tensors, meta %v", len(ts), meta)
	}
	names := map[string]bool{}
	for _, x := range ts {
		names[x.Name] = true
	}
	for _, x := range tensors {
		if !names[x.Name] {
			t.Fatalf("tensor %s missing from the fetched header", x.Name)
		}
	}
	// The fetched blocks are now stored on b: they survive without a.
	a.Close()
	if _, err := eb.File(ctx, c); err != nil {
		t.Fatalf("re-read from b's own store: %v", err)
	}
}

func TestCorruptBlockOnDiskIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := Open(dir)
	b := blocks.NewBlock([]byte("record"))
	s.Put(ctx, b)
	// Overwrite the stored bytes under the same key, as tampering would.
	bad := blocks.NewBlock([]byte("forged"))
	forged, _ := blocks.NewBlockWithCid(bad.RawData(), b.Cid())
	s.Blockstore().DeleteBlock(ctx, b.Cid())
	s.Blockstore().Put(ctx, forged)
	if _, err := s.Get(ctx, b.Cid()); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("tampered block served: %v", err)
	}
	s.Close()
	_ = os.RemoveAll(dir)
}
