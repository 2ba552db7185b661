package storage

import (
	"bytes"
	"context"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

func rawBlock(t *testing.T, fill byte, n int) blocks.Block {
	t.Helper()
	data := bytes.Repeat([]byte{fill}, n)
	c, err := cid.V1Builder{Codec: cid.Raw, MhType: multihash.SHA2_256}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The hot cache keeps the most recently used blocks within its budget and
// serves them without the disk; what falls out is still read from disk.
func TestHotBlocksStayWithinBudget(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetHotBytes(3 << 10)
	var bs []blocks.Block
	for i := range 5 {
		b := rawBlock(t, byte(i), 1<<10)
		bs = append(bs, b)
		if err := s.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if s.hot.size > 3<<10 || len(s.hot.byKey) != 3 {
		t.Fatalf("cache holds %d bytes in %d blocks, want at most 3 KiB in 3", s.hot.size, len(s.hot.byKey))
	}
	for i, b := range bs {
		_, cached := s.hot.byKey[key(b.Cid())]
		if cached != (i >= 2) {
			t.Errorf("block %d cached = %v: want the three most recent", i, cached)
		}
	}
	// Reading an evicted block brings it back in, the least recent goes.
	got, err := s.Get(ctx, bs[0].Cid())
	if err != nil || !bytes.Equal(got.RawData(), bs[0].RawData()) {
		t.Fatalf("evicted block read back: %v", err)
	}
	if _, ok := s.hot.byKey[key(bs[2].Cid())]; ok {
		t.Error("block 2 still cached after block 0 was read back")
	}
	// A block over the budget is stored but never cached.
	big := rawBlock(t, 9, 4<<10)
	if err := s.Put(ctx, big); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.hot.byKey[key(big.Cid())]; ok {
		t.Error("a block over the whole budget was cached")
	}
	if n, err := s.Blockstore().GetSize(ctx, big.Cid()); err != nil || n != 4<<10 {
		t.Errorf("big block size %d, %v", n, err)
	}
	// Deleting removes it from memory too.
	if err := s.Blockstore().DeleteBlock(ctx, bs[4].Cid()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Blockstore().Has(ctx, bs[4].Cid()); ok {
		t.Error("deleted block still there")
	}
	s.SetHotBytes(0)
	if s.hot.size != 0 || s.hot.order.Len() != 0 {
		t.Errorf("budget 0 keeps %d bytes", s.hot.size)
	}
}

// A cached block asked for under the other CID version of the same bytes
// comes back under the CID asked for.
func TestHotBlocksAnswerTheCIDAsked(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := rawBlock(t, 7, 100)
	if err := s.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	other := cid.NewCidV1(cid.DagProtobuf, b.Cid().Hash())
	got, err := s.hot.Get(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cid().Equals(other) {
		t.Errorf("got CID %s, want %s", got.Cid(), other)
	}
}

// Callers own the bytes they put and get, as with LevelDB: a write to
// either never reaches the next reader.
func TestHotBlocksAreCopies(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := rawBlock(t, 3, 64)
	want := bytes.Clone(b.RawData())
	if err := s.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	b.RawData()[0] ^= 0xff // the writer reuses its buffer
	got, err := s.hot.Get(ctx, b.Cid())
	if err != nil || !bytes.Equal(got.RawData(), want) {
		t.Fatalf("read after the writer's change: %v", err)
	}
	got.RawData()[1] ^= 0xff // a reader decodes in place
	again, err := s.Get(ctx, b.Cid())
	if err != nil || !bytes.Equal(again.RawData(), want) {
		t.Fatalf("read after a reader's change: %v", err)
	}
}
