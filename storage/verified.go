package storage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
)

// verifiedBlockstore re-hashes every block it reads and refuses one whose
// bytes no longer match its CID. Bitswap and the blockservice read through
// it, so a block corrupted on disk (bit rot, tampering) is neither served
// to peers nor handed to the node; the error names the block. Hashing on
// read costs one SHA-256 per block served, far below the network's cost of
// sending it.
//
// storage/transfer is served from the blockstore beneath (readOnly, hot.go):
// its requester hashes every block it receives and fails the fetch on a
// mismatch, so a second hash on the server would only double the cost.
//
// It deliberately does not implement blockstore.Viewer: a reader that
// found View would read the bytes unchecked.
type verifiedBlockstore struct {
	blockstore.Blockstore
}

// ErrCorrupt marks a stored block whose bytes do not hash to its CID.
var ErrCorrupt = fmt.Errorf("stored block is corrupt")

func (v verifiedBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	b, err := v.Blockstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	got, err := c.Prefix().Sum(b.RawData())
	if err != nil {
		return nil, fmt.Errorf("storage: block %s: %w", c, err)
	}
	if !got.Equals(c) {
		return nil, fmt.Errorf("storage: block %s: its bytes hash to %s: %w", c, got, ErrCorrupt)
	}
	return b, nil
}

// WriteFileAtomic writes data to path so that a crash at any moment leaves
// either the old file or the complete new one, never a torn one: a temp
// file in the same directory (so the rename cannot cross file systems),
// written with mode, synced, renamed over path, and the directory synced so
// the rename itself survives a power cut. The temp name is random, so two
// processes writing one file never write into each other's temp.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every file system syncs directories
		d.Close()
	}
	return nil
}
