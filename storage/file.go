package storage

import (
	"context"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
)

// AddFile stores data as a UnixFS file in the store alone, offline, with
// the layout Exchange.AddFile uses (so the same CID).
func (s *Store) AddFile(_ context.Context, data []byte) (cid.Cid, error) {
	return addFile(merkledag.NewDAGService(blockservice.New(s.Blockstore(), nil)), data)
}
