// Package storage keeps a node's blocks on disk and moves them between
// peers: a boxo blockstore on a LevelDB datastore under the node's data dir,
// a blockservice with bitswap over the node's libp2p host, checkpoints as
// UnixFS files of safetensors, and durable named heads (the ledger's latest
// record). It knows nothing of scores or rounds; subpackages record and
// safetensors hold the formats.
package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	leveldb "github.com/ipfs/go-ds-leveldb"
)

// Store is a node's persistent block store and its named heads.
type Store struct {
	dir string
	ds  *leveldb.Datastore
	bs  blockstore.Blockstore
	hot *hotBlockstore
}

// headPrefix namespaces the heads apart from the blocks in the datastore.
var headPrefix = ds.NewKey("/swarmtrain/heads")

// blocksDirMode keeps the node's blocks to its owner: they include its
// heads and every record it holds, and other local users have no business
// altering them.
const blocksDirMode = 0o700

// Open opens (creating if needed) the store in dir/blocks. Every block read
// from it, by the node or by bitswap for a peer, is re-hashed against its
// CID (verifiedBlockstore).
func Open(dir string) (*Store, error) {
	path := filepath.Join(dir, "blocks")
	if err := os.MkdirAll(path, blocksDirMode); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	// A dir made by an older version (0755) is tightened.
	if err := os.Chmod(path, blocksDirMode); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	d, err := leveldb.NewDatastore(path, nil)
	if err != nil {
		return nil, fmt.Errorf("storage: opening %s (is another swarmtrain using this data dir?): %w", path, err)
	}
	hot := newHotBlockstore(blockstore.NewBlockstore(d), DefaultHotBytes)
	return &Store{dir: dir, ds: d, bs: verifiedBlockstore{hot}, hot: hot}, nil
}

// SetHotBytes sets how many bytes of recently written or read blocks the
// store keeps in memory (DefaultHotBytes until then); 0 keeps none. A node
// that serves checkpoints larger than the default sets it to hold them, so
// late joiners fetch the newest one from memory, not LevelDB.
func (s *Store) SetHotBytes(n int) {
	if n < 0 {
		n = 0
	}
	s.hot.setMax(n)
}

// Blockstore is the store's hash-checking blockstore (for bitswap and the
// blockservice).
func (s *Store) Blockstore() blockstore.Blockstore { return s.bs }

// Datastore is the underlying datastore.
func (s *Store) Datastore() ds.Batching { return s.ds }

// Put stores a block locally.
func (s *Store) Put(ctx context.Context, b blocks.Block) error { return s.bs.Put(ctx, b) }

// Get reads a block stored locally; its bytes are checked against its CID
// (verifiedBlockstore), so a block altered on disk is refused, not served.
func (s *Store) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return s.bs.Get(ctx, c)
}

// Has reports whether a block is stored locally.
func (s *Store) Has(ctx context.Context, c cid.Cid) (bool, error) { return s.bs.Has(ctx, c) }

// SetHead durably records c as the head called name: it returns only once
// the write is synced, so a crash after SetHead never loses it.
func (s *Store) SetHead(ctx context.Context, name string, c cid.Cid) error {
	k := headPrefix.ChildString(name)
	if err := s.ds.Put(ctx, k, c.Bytes()); err != nil {
		return fmt.Errorf("storage: head %s: %w", name, err)
	}
	return s.ds.Sync(ctx, k)
}

// ErrNoHead is returned by Head when no head of that name was ever set.
var ErrNoHead = errors.New("no such head")

// Head returns the head called name.
func (s *Store) Head(ctx context.Context, name string) (cid.Cid, error) {
	b, err := s.ds.Get(ctx, headPrefix.ChildString(name))
	if errors.Is(err, ds.ErrNotFound) {
		return cid.Undef, fmt.Errorf("storage: head %s: %w", name, ErrNoHead)
	}
	if err != nil {
		return cid.Undef, err
	}
	_, c, err := cid.CidFromBytes(b)
	return c, err
}

// Close closes the datastore.
func (s *Store) Close() error { return s.ds.Close() }
