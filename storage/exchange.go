package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/ipfs/boxo/bitswap"
	"github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"
	mh "github.com/multiformats/go-multihash"

	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/storage/transfer"
)

// MaxCheckpointBytes caps a checkpoint read from the network.
const MaxCheckpointBytes = 2 << 30

// Exchange moves blocks between peers: bitswap over a libp2p host, with a
// content router to find providers and to announce what we store.
type Exchange struct {
	h          host.Host
	noTransfer bool
	store      *Store
	router     routing.ContentRouting
	bswap      *bitswap.Bitswap
	bserv      blockservice.BlockService
	dag        ipld.DAGService
	blocks     *transfer.Server // nil with NoTransfer
	// directFetches counts files fetched over the transfer protocol (tests).
	directFetches atomic.Int64
}

// NewExchange starts bitswap on h over the store and serves the store's
// blocks over /swarmtrain/blocks/1. router (the DHT, or nil for "ask
// connected peers only") finds providers and receives our announcements.
// ctx bounds bitswap's lifetime; Close stops it earlier.
func NewExchange(ctx context.Context, h host.Host, router routing.ContentRouting, store *Store) *Exchange {
	return NewExchangeWith(ctx, h, router, store, ExchangeOptions{})
}

// ExchangeOptions turn off parts of the exchange, for benchmarks/transfer
// to measure each path alone; nodes use NewExchange.
type ExchangeOptions struct {
	// BitswapDefaults runs bitswap with boxo's defaults, not bitswapOptions.
	BitswapDefaults bool
	// NoTransfer neither serves nor uses /swarmtrain/blocks/1.
	NoTransfer bool
	// NoBulk serves /swarmtrain/blocks/1 on libp2p streams only, never
	// offering a bulk TCP connection.
	NoBulk bool
}

// NewExchangeWith is NewExchange with some parts turned off.
func NewExchangeWith(ctx context.Context, h host.Host, router routing.ContentRouting, store *Store, o ExchangeOptions) *Exchange {
	net := bsnet.NewFromIpfsHost(h)
	var finder routing.ContentDiscovery
	if router != nil {
		finder = router
	}
	var opts []bitswap.Option
	if !o.BitswapDefaults {
		opts = bitswapOptions
	}
	bswap := bitswap.New(ctx, net, finder, store.Blockstore(), opts...)
	bserv := blockservice.New(store.Blockstore(), bswap)
	var srv *transfer.Server
	if !o.NoTransfer {
		// Served from the blockstore beneath the hash check: every block
		// this protocol sends is hashed by the requester, which refuses a
		// mismatch and fails the fetch, as a "don't have" from the checked
		// store would. Hashing here too was a third of the server's CPU
		// (benchmarks/README.md, checkpoint transfer).
		srv = transfer.NewServer(readOnly{store.hot}) // beneath the hash check, no copies
		if o.NoBulk {
			srv.NoBulk()
		}
		h.SetStreamHandler(transfer.ID, srv.Handle)
	}
	return &Exchange{h: h, noTransfer: o.NoTransfer, store: store, router: router, bswap: bswap, bserv: bserv, dag: merkledag.NewDAGService(bserv), blocks: srv}
}

// Put stores a block and tells bitswap peers that want it.
func (e *Exchange) Put(ctx context.Context, b blocks.Block) error { return e.bserv.AddBlock(ctx, b) }

// Get returns a block from the store, or fetches it from peers over bitswap
// and stores it (a bare bitswap GetBlock would not store it).
func (e *Exchange) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return e.bserv.GetBlock(ctx, c)
}

// Provide announces that we hold c, if there is a router.
func (e *Exchange) Provide(ctx context.Context, c cid.Cid) error {
	if e.router == nil {
		return nil
	}
	return e.router.Provide(ctx, c, true)
}

// The UnixFS layout of every file we store: the parameters of Kubo's
// unixfs-v1-2025 import profile (IPIP-499), so anyone reproduces a
// checkpoint's CID with
//
//	ipfs add --cid-version=1 --raw-leaves --chunker=size-1048576 --max-file-links=1024
//
// (or `ipfs config profile apply unixfs-v1-2025` and a plain `ipfs add`):
// CIDv1, SHA2-256, raw leaves, 1 MiB chunks, balanced DAG, at most 1024
// links per node. boxo's own default is 174 links (the legacy
// unixfs-v0-2015 profile), under which files over 174 MiB get another CID.
const (
	// ChunkSize is the UnixFS chunk of a file: 1 MiB, bitswap's largest
	// comfortable block (its hard limit is 2 MiB).
	ChunkSize = 1 << 20
	// MaxLinks is the most links a UnixFS node holds before the balanced
	// builder adds a level.
	MaxLinks = 1024
)

// fileParams are boxo's importer parameters for the layout above.
func fileParams(dag ipld.DAGService, maxLinks int) helpers.DagBuilderParams {
	return helpers.DagBuilderParams{
		Dagserv:    dag,
		Maxlinks:   maxLinks,
		RawLeaves:  true,
		CidBuilder: cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256},
	}
}

// AddFile stores data as a UnixFS file and returns its root CID.
func (e *Exchange) AddFile(ctx context.Context, data []byte) (cid.Cid, error) {
	return addFile(e.dag, data)
}

func addFile(dag ipld.DAGService, data []byte) (cid.Cid, error) {
	return importFile(dag, bytes.NewReader(data), ChunkSize, MaxLinks)
}

// importFile runs boxo's balanced importer over r. Only tests pass other
// chunk sizes or link counts, to check the layout on small inputs.
func importFile(dag ipld.DAGService, r io.Reader, chunkSize int64, maxLinks int) (cid.Cid, error) {
	p := fileParams(dag, maxLinks)
	db, err := p.New(chunker.NewSizeSplitter(r, chunkSize))
	if err != nil {
		return cid.Undef, err
	}
	nd, err := balanced.Layout(db)
	if err != nil {
		return cid.Undef, fmt.Errorf("storage: adding file: %w", err)
	}
	return nd.Cid(), nil
}

// FileCID computes the CID AddFile would give data, storing nothing: a
// peer checks a model it computed itself against a record this way.
func FileCID(data []byte) (cid.Cid, error) {
	return addFile(discardDAG{}, data)
}

// ReaderCID is FileCID over a stream, for files too large to hold.
func ReaderCID(r io.Reader) (cid.Cid, error) {
	return importFile(discardDAG{}, r, ChunkSize, MaxLinks)
}

// File reads a UnixFS file by CID and keeps its blocks in the store. A file
// not stored here comes over /swarmtrain/blocks/1 from a connected peer
// that speaks it (storage/transfer: several times bitswap's speed), else
// over bitswap, which also finds providers through the router.
func (e *Exchange) File(ctx context.Context, c cid.Cid) ([]byte, error) {
	if have, err := e.store.Has(ctx, c); err == nil && !have {
		if f := e.direct(ctx, c); f != nil {
			if err := e.bserv.AddBlocks(ctx, f.Blocks); err != nil {
				return nil, fmt.Errorf("storage: storing file %s: %w", c, err)
			}
			return f.Data, nil
		}
	}
	return readFile(ctx, e.dag, c)
}

// Load reads a UnixFS file by CID into memory without storing its blocks:
// for a checkpoint the node only needs once (a model it could not replay).
// It tries the store, then /swarmtrain/blocks/1, then bitswap (which does
// store what it fetches).
func (e *Exchange) Load(ctx context.Context, c cid.Cid) ([]byte, error) {
	if have, err := e.store.Has(ctx, c); err == nil && !have {
		if f := e.direct(ctx, c); f != nil {
			return f.Data, nil
		}
	}
	return readFile(ctx, e.dag, c)
}

// maxDirectPeers bounds how many connected peers a file is asked of over
// the transfer protocol before bitswap takes over: asking a peer that
// lacks the root costs one round trip.
const maxDirectPeers = 8

// direct fetches c over the transfer protocol from a connected peer that
// advertises it (identify fills the peerstore), or returns nil. Every
// block is hash-checked on arrival, so which peer answers does not matter.
func (e *Exchange) direct(ctx context.Context, c cid.Cid) *transfer.File {
	if e.noTransfer {
		return nil
	}
	tried := 0
	for _, p := range e.h.Network().Peers() {
		if tried == maxDirectPeers || ctx.Err() != nil {
			return nil
		}
		if ok, err := e.h.Peerstore().SupportsProtocols(p, transfer.ID); err != nil || len(ok) == 0 {
			continue
		}
		tried++
		f, err := transfer.Fetch(ctx, e.h, p, c, MaxCheckpointBytes)
		if err == nil {
			e.directFetches.Add(1)
			return f
		}
	}
	return nil
}

// ReadFile reads a UnixFS file by CID from the store alone, offline.
func (s *Store) ReadFile(ctx context.Context, c cid.Cid) ([]byte, error) {
	return readFile(ctx, merkledag.NewDAGService(blockservice.New(s.Blockstore(), nil)), c)
}

func readFile(ctx context.Context, dag ipld.DAGService, c cid.Cid) ([]byte, error) {
	nd, err := dag.Get(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("storage: file %s: %w", c, err)
	}
	r, err := uio.NewDagReader(ctx, nd, merkledag.NewSession(ctx, dag))
	if err != nil {
		return nil, fmt.Errorf("storage: file %s: %w", c, err)
	}
	if r.Size() > MaxCheckpointBytes {
		return nil, fmt.Errorf("storage: file %s is %d bytes, over the limit of %d", c, r.Size(), MaxCheckpointBytes)
	}
	buf := make([]byte, 0, r.Size())
	w := bytes.NewBuffer(buf)
	if _, err := io.Copy(w, r); err != nil {
		return nil, fmt.Errorf("storage: reading file %s: %w", c, err)
	}
	return w.Bytes(), nil
}

// PutCheckpoint encodes tensors as safetensors, stores the file, announces
// its root and returns its CID.
func (e *Exchange) PutCheckpoint(ctx context.Context, tensors []safetensors.Tensor, meta map[string]string) (cid.Cid, error) {
	b, err := safetensors.Encode(tensors, meta)
	if err != nil {
		return cid.Undef, err
	}
	c, err := e.AddFile(ctx, b)
	if err != nil {
		return cid.Undef, err
	}
	return c, e.Provide(ctx, c)
}

// GetCheckpoint fetches and decodes a safetensors checkpoint by CID.
func (e *Exchange) GetCheckpoint(ctx context.Context, c cid.Cid) ([]safetensors.Tensor, map[string]string, error) {
	b, err := e.File(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := safetensors.Decode(b)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: %w", c, err)
	}
	return t, m, nil
}

// Close stops serving the transfer protocol (its bulk listeners too) and
// bitswap.
func (e *Exchange) Close() error {
	if !e.noTransfer {
		e.h.RemoveStreamHandler(transfer.ID)
		_ = e.blocks.Close()
	}
	return e.bswap.Close()
}

// discardDAG is a DAGService that keeps nothing: for computing CIDs.
type discardDAG struct{}

func (discardDAG) Get(context.Context, cid.Cid) (ipld.Node, error) { return nil, ipld.ErrNotFound{} }
func (discardDAG) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption)
	close(ch)
	return ch
}
func (discardDAG) Add(context.Context, ipld.Node) error        { return nil }
func (discardDAG) AddMany(context.Context, []ipld.Node) error  { return nil }
func (discardDAG) Remove(context.Context, cid.Cid) error       { return nil }
func (discardDAG) RemoveMany(context.Context, []cid.Cid) error { return nil }
