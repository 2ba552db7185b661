package storage

import (
	"bytes"
	"container/list"
	"context"
	"sync"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// DefaultHotBytes is the memory a store keeps for its most recently written
// or read blocks. A swarm's hot data is small and recent: the checkpoint the
// coordinator sealed a moment ago, which every late joiner asks for next,
// and the latest records. Serving them from memory skips LevelDB, which
// allocates and zeroes two fresh buffers for every 1 MiB block it reads
// (its buffer pool stops short of blocks that size) and was half of what a
// 500 MB checkpoint fetch waited on in benchmarks/transfer. 16 MiB holds a
// round's records, payloads and committed states and the newest checkpoint
// of the built-in MNIST models (0.4-5 MB), at a price every contributor can
// pay (their whole resident set is ~180 MB); the coordinator, which late
// joiners fetch from, raises it to two checkpoints' worth (SetHotBytes).
const DefaultHotBytes = 16 << 20

// hotBlockstore keeps up to max bytes of blocks in memory, least recently
// used out first, in front of the blockstore on disk. Blocks are immutable
// (a CID names its bytes), so the cache is never stale: a write goes to disk
// first and only then into memory, and a delete leaves both. It keeps and
// hands out copies, as LevelDB does: a caller may decode into or reuse the
// bytes it got, and no such write may reach another reader.
//
// It sits beneath verifiedBlockstore, so a block read for bitswap or the
// node is still re-hashed against its CID whether it came from memory or
// disk.
type hotBlockstore struct {
	blockstore.Blockstore

	mu    sync.Mutex
	max   int
	size  int
	order *list.List               // front: most recently used; values *blocks.BasicBlock
	byKey map[string]*list.Element // multihash bytes -> element
}

func newHotBlockstore(under blockstore.Blockstore, max int) *hotBlockstore {
	return &hotBlockstore{Blockstore: under, max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// setMax changes the budget, evicting what no longer fits.
func (h *hotBlockstore) setMax(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.max = n
	h.evict()
}

// key is the multihash: the blockstore keys by it too, so a CIDv0 and a
// CIDv1 of the same bytes share one entry.
func key(c cid.Cid) string { return string(c.Hash()) }

func (h *hotBlockstore) lookup(c cid.Cid, shared bool) (blocks.Block, bool) {
	h.mu.Lock()
	e, ok := h.byKey[key(c)]
	var b blocks.Block
	if ok {
		h.order.MoveToFront(e)
		b = e.Value.(blocks.Block)
	}
	h.mu.Unlock()
	if !ok {
		return nil, false
	}
	if shared && b.Cid().Equals(c) {
		return b, true
	}
	// A copy, under the CID asked for (the same bytes may be asked for
	// under the other CID version): callers own what Get returns, as they
	// do a LevelDB read, and some decode into or reuse it.
	raw := b.RawData()
	if !shared {
		raw = bytes.Clone(raw)
	}
	nb, err := blocks.NewBlockWithCid(raw, c)
	if err != nil {
		return nil, false
	}
	return nb, true
}

func (h *hotBlockstore) add(b blocks.Block) {
	n := len(b.RawData())
	h.mu.Lock()
	defer h.mu.Unlock()
	if n > h.max {
		return
	}
	k := key(b.Cid())
	if e, ok := h.byKey[k]; ok {
		h.order.MoveToFront(e)
		return
	}
	// Kept as a copy: a writer may reuse its buffer once Put returns, as
	// it may with LevelDB.
	kept, err := blocks.NewBlockWithCid(bytes.Clone(b.RawData()), b.Cid())
	if err != nil {
		return
	}
	h.byKey[k] = h.order.PushFront(kept)
	h.size += n
	h.evict()
}

// evict drops least recently used blocks until the cache fits its budget.
// Called with mu held.
func (h *hotBlockstore) evict() {
	for h.size > h.max {
		e := h.order.Back()
		b := h.order.Remove(e).(blocks.Block)
		delete(h.byKey, key(b.Cid()))
		h.size -= len(b.RawData())
	}
}

func (h *hotBlockstore) drop(c cid.Cid) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e, ok := h.byKey[key(c)]; ok {
		b := h.order.Remove(e).(blocks.Block)
		delete(h.byKey, key(c))
		h.size -= len(b.RawData())
	}
}

func (h *hotBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if b, ok := h.lookup(c, false); ok {
		return b, nil
	}
	b, err := h.Blockstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	h.add(b)
	return b, nil
}

func (h *hotBlockstore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	h.mu.Lock()
	_, ok := h.byKey[key(c)]
	h.mu.Unlock()
	if ok {
		return true, nil
	}
	return h.Blockstore.Has(ctx, c)
}

func (h *hotBlockstore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	h.mu.Lock()
	e, ok := h.byKey[key(c)]
	var n int
	if ok {
		n = len(e.Value.(blocks.Block).RawData())
	}
	h.mu.Unlock()
	if ok {
		return n, nil
	}
	return h.Blockstore.GetSize(ctx, c)
}

// Put writes to disk first: a block is in memory only once it is durable.
func (h *hotBlockstore) Put(ctx context.Context, b blocks.Block) error {
	if err := h.Blockstore.Put(ctx, b); err != nil {
		return err
	}
	h.add(b)
	return nil
}

func (h *hotBlockstore) PutMany(ctx context.Context, bs []blocks.Block) error {
	if err := h.Blockstore.PutMany(ctx, bs); err != nil {
		return err
	}
	for _, b := range bs {
		h.add(b)
	}
	return nil
}

func (h *hotBlockstore) DeleteBlock(ctx context.Context, c cid.Cid) error {
	h.drop(c)
	return h.Blockstore.DeleteBlock(ctx, c)
}

// readOnly serves the hot blocks without copying them, for a reader that
// never writes into what it gets (the /swarmtrain/blocks/1 server only
// writes them to the wire): a copy per 1 MiB block cost that server a
// third more CPU per GB in benchmarks/transfer.
type readOnly struct{ h *hotBlockstore }

func (r readOnly) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if b, ok := r.h.lookup(c, true); ok {
		return b, nil
	}
	b, err := r.h.Blockstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	r.h.add(b)
	return b, nil
}
