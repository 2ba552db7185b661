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

	"github.com/ipfs/boxo/blockstore"
	dshelp "github.com/ipfs/boxo/datastore/dshelp"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

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

// TestCheckpointFetched fetches a checkpoint over /swarmtrain/blocks/1 and,
// from a peer that does not serve it, over bitswap.
func TestCheckpointFetched(t *testing.T) {
	t.Run("transfer", func(t *testing.T) { testCheckpointFetched(t, ExchangeOptions{}, 1) })
	t.Run("bitswap", func(t *testing.T) { testCheckpointFetched(t, ExchangeOptions{NoTransfer: true}, 0) })
}

func testCheckpointFetched(t *testing.T, serverOpts ExchangeOptions, direct int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := loopbackHost(t), loopbackHost(t)
	sa, _ := Open(t.TempDir())
	sb, _ := Open(t.TempDir())
	defer sa.Close()
	defer sb.Close()
	ea, eb := NewExchangeWith(ctx, a, nil, sa, serverOpts), NewExchange(ctx, b, nil, sb)
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
	if n := eb.directFetches.Load(); n != direct {
		t.Fatalf("%d files came over the transfer protocol, want %d", n, direct)
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

// corruptOnDisk overwrites the bytes stored for c in the datastore, under
// the key the blockstore reads: bit rot or tampering.
func corruptOnDisk(t *testing.T, s *Store, c cid.Cid, with []byte) {
	t.Helper()
	key := blockstore.BlockPrefix.Child(dshelp.MultihashToDsKey(c.Hash()))
	if err := s.Datastore().Put(context.Background(), key, with); err != nil {
		t.Fatal(err)
	}
	// The next read comes from disk, as once the block has left the hot
	// cache (or after a restart): memory holds the bytes as written.
	s.hot.drop(c)
}

// TestBitswapDoesNotServeCorruptBlocks: a block corrupted on disk is not
// sent to a peer that asks for it over bitswap — before, bitswap read the
// blockstore directly and served the altered bytes; only Store.Get checked.
func TestBitswapDoesNotServeCorruptBlocks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, sa, _, ea, eb := exchangePair(ctx, t)
	good, rotten := blocks.NewBlock([]byte("a round record")), blocks.NewBlock([]byte("another record"))
	for _, blk := range []blocks.Block{good, rotten} {
		if err := ea.Put(ctx, blk); err != nil {
			t.Fatal(err)
		}
	}
	corruptOnDisk(t, sa, rotten.Cid(), []byte("another recorD"))
	if _, err := sa.Blockstore().Get(ctx, rotten.Cid()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("the blockstore bitswap reads returned the corrupt block: %v", err)
	}
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	if _, err := eb.Get(ctx, good.Cid()); err != nil {
		t.Fatalf("the intact block: %v", err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	defer fcancel()
	if blk, err := eb.Get(fctx, rotten.Cid()); err == nil {
		t.Fatalf("fetched %q for a block corrupt at its only holder", blk.RawData())
	}
	st, err := ea.bswap.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.BlocksSent != 1 {
		t.Errorf("the holder sent %d blocks; only the intact one should have gone", st.BlocksSent)
	}
}

func TestBlocksDirIsPrivate(t *testing.T) {
	dir := t.TempDir()
	// An older version made it 0755.
	if err := os.MkdirAll(filepath.Join(dir, "blocks"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("blocks dir mode %04o, want 0700", fi.Mode().Perm())
	}
}

// TestWriteFileAtomic: the file appears whole with its mode, replaces an
// older one, and no temp file outlives the write, even one that failed.
func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("new contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "new contents" || fi.Mode().Perm() != 0o600 {
		t.Errorf("got %q mode %04o", b, fi.Mode().Perm())
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), []byte("y"), 0o600); err == nil {
		t.Error("wrote into a missing dir")
	}
	// A write that fails after its temp file exists (the rename onto a
	// non-empty directory) must remove the temp file.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(busy, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(busy, []byte("y"), 0o600); err == nil {
		t.Error("replaced a non-empty directory")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("dir holds %d entries after the writes, want the file and the directory", len(entries))
	}
}

// TestLoadKeepsNothing: Load fetches a file over the transfer protocol into
// memory and stores none of its blocks (a contributor's model it could not
// replay); File stores them.
func TestLoadKeepsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b, _, sb, ea, eb := exchangePair(ctx, t)
	want := bytes.Repeat([]byte("swarmtrain"), 300_000) // 3 MB: several 1 MiB leaves
	c, err := ea.AddFile(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	got, err := eb.Load(ctx, c)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Load: %v (%d bytes, want %d)", err, len(got), len(want))
	}
	if have, _ := sb.Has(ctx, c); have {
		t.Fatal("Load stored the file's root")
	}
	if n := eb.directFetches.Load(); n != 1 {
		t.Fatalf("%d fetches over the transfer protocol, want 1", n)
	}
	if _, err := eb.File(ctx, c); err != nil {
		t.Fatal(err)
	}
	if have, _ := sb.Has(ctx, c); !have {
		t.Fatal("File did not store the file's root")
	}
}

// TestTransferNeverStoresCorruptBlocks: the transfer protocol serves the
// blockstore beneath the hash check, so a leaf corrupted on the holder's
// disk is sent; the requester refuses it, bitswap (which serves through
// the check) has nothing to offer, and nothing corrupt is stored.
func TestTransferNeverStoresCorruptBlocks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b, sa, sb, ea, eb := exchangePair(ctx, t)
	data := make([]byte, 3*ChunkSize+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	root, err := ea.AddFile(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.Addrs()}); err != nil {
		t.Fatal(err)
	}
	leaf, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(data[ChunkSize : 2*ChunkSize])
	if err != nil {
		t.Fatal(err)
	}
	rotten := append([]byte(nil), data[ChunkSize:2*ChunkSize]...)
	rotten[9] ^= 1
	corruptOnDisk(t, sa, leaf, rotten)
	if blk, err := sa.hot.Get(ctx, leaf); err != nil || !bytes.Equal(blk.RawData(), rotten) {
		t.Fatalf("the transfer server's blockstore: %v (want the corrupt leaf)", err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	defer fcancel()
	if _, err := eb.File(fctx, root); err == nil {
		t.Fatal("fetched a file whose leaf is corrupt at its only holder")
	}
	if have, _ := sb.Has(ctx, leaf); have {
		t.Fatal("the requester stored the corrupt leaf")
	}
	if n := eb.directFetches.Load(); n != 0 {
		t.Fatalf("%d fetches over the transfer protocol succeeded", n)
	}
}

// exchangePair is two loopback hosts, each with its own store and
// exchange, closed when the test ends.
func exchangePair(ctx context.Context, t *testing.T) (a, b host.Host, sa, sb *Store, ea, eb *Exchange) {
	t.Helper()
	a, b = loopbackHost(t), loopbackHost(t)
	var err error
	if sa, err = Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if sb, err = Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	ea, eb = NewExchange(ctx, a, nil, sa), NewExchange(ctx, b, nil, sb)
	t.Cleanup(func() { ea.Close(); eb.Close(); sa.Close(); sb.Close() })
	return a, b, sa, sb, ea, eb
}
