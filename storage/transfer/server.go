package transfer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
)

// Getter is where the server reads blocks. It need not re-hash them: the
// requester checks every block against its CID and fails the fetch on a
// mismatch (storage serves the blockstore beneath its hash check).
type Getter interface {
	Get(ctx context.Context, c cid.Cid) (blocks.Block, error)
}

// MaxServing bounds the streams served at once, over all peers: a few
// whole-file fetches at a time saturate the node's link and disk; more
// would only share them and hold memory (one block each). A stream over the
// cap is reset at once, and the requester falls back to bitswap. The
// resource manager (node/p2p) adds a per-peer cap (8), so one peer cannot
// take them all.
const MaxServing = 16

// idleTimeout is how long a stream may go without progress — the server
// waiting for the next request or for the requester to take the next
// block, the requester waiting for the next bytes — before it is dropped:
// a stalled peer must not hold a serving slot, nor keep a fetch from
// falling back to bitswap. It bounds each step, not the whole transfer, so
// a big file over a slow link still completes.
var idleTimeout = 30 * time.Second // a var so tests can shorten it

// serveAhead is how many blocks one served stream reads ahead of the one
// it sends: two keep both cores of a small machine reading while the
// block before is sent; more would only hold memory.
const serveAhead = 2

// maxAhead bounds the blocks read ahead at once over all streams and bulk
// connections (at most 2 MiB each, so 32 MiB): beyond what the resource
// manager accounts for each stream (the block being sent), and a stream
// whose requester stalls holds its read-ahead only until idleTimeout.
const maxAhead = 16

// bufBytes is the stream buffer each side uses: small frames (headers,
// requests) are batched, block bodies bypass it.
const bufBytes = 64 << 10

// Server answers /swarmtrain/blocks/1 requests from a blockstore, on
// libp2p streams and on the bulk TCP connections it offers (bulk.go).
type Server struct {
	bs Getter
	// slots bounds what is served at once, streams and bulk connections
	// together (MaxServing).
	slots chan struct{}
	// ahead bounds the blocks read ahead (maxAhead).
	ahead chan struct{}
	bulk  bulkServer
}

// NewServer serves the blocks in bs. Close stops its bulk listeners.
func NewServer(bs Getter) *Server {
	s := &Server{bs: bs, slots: make(chan struct{}, MaxServing), ahead: make(chan struct{}, maxAhead)}
	s.bulk.init()
	return s
}

// NoBulk makes the server decline every bulk offer request, so requesters
// stay on the libp2p stream (benchmarks/transfer measures both).
func (s *Server) NoBulk() *Server {
	s.bulk.off = true
	return s
}

// Handle is the stream handler (host.SetStreamHandler(ID, s.Handle)).
func (s *Server) Handle(st network.Stream) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		_ = st.Reset()
		return
	}
	// Account for the block in flight and the buffers, so the resource
	// manager's protocol memory limit bounds what serving can hold.
	if err := st.Scope().ReserveMemory(MaxBlockBytes+2*bufBytes, network.ReservationPriorityMedium); err != nil {
		_ = st.Reset()
		return
	}
	defer st.Scope().ReleaseMemory(MaxBlockBytes + 2*bufBytes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	offerFn := func() *offer { return s.offer(st) }
	if err := s.serve(ctx, st, func() { _ = st.SetDeadline(time.Now().Add(idleTimeout)) }, offerFn); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.Close()
}

// serve answers requests on rw until the requester closes its side (nil)
// or something goes wrong. progress runs before each request is read and
// each block is written (it pushes the stream's deadline back). offerFn
// answers a bulk offer request; nil (a bulk connection, a test pipe)
// declines them.
func (s *Server) serve(ctx context.Context, rw io.ReadWriter, progress func(), offerFn func() *offer) error {
	r := bufio.NewReaderSize(rw, bufBytes)
	w := bufio.NewWriterSize(rw, bufBytes)
	for {
		progress()
		want, err := readRequest(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(want) == 0 {
			var o *offer
			if offerFn != nil {
				o = offerFn()
			}
			if err := writeOffer(w, o); err != nil {
				return err
			}
			continue
		}
		if err := s.answer(ctx, w, want, progress); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
}

// got is a block read ahead.
type got struct {
	b   blocks.Block
	err error
}

// answer writes the blocks of want in order. Reading a block (a LevelDB
// read and copy) costs more CPU than sending it on a bulk connection, so
// up to serveAhead blocks are read by other goroutines while one is sent:
// on a multi-core machine the reads run side by side. A read-ahead takes
// one of the server's aheadSlots; with none free, the block is read in
// turn, as without read-ahead.
func (s *Server) answer(ctx context.Context, w *bufio.Writer, want []cid.Cid, progress func()) error {
	ctx, cancel := context.WithCancel(ctx)
	ahead := make([]chan got, len(want)) // nil: read in turn
	next := 0                            // the first block not yet written
	defer func() {
		cancel()
		for _, ch := range ahead[next:] {
			if ch != nil {
				<-ch
				<-s.ahead
			}
		}
	}()
	launch := func(i int) {
		if i >= len(want) {
			return
		}
		select {
		case s.ahead <- struct{}{}:
		default:
			return
		}
		ch := make(chan got, 1)
		ahead[i] = ch
		go func(c cid.Cid) {
			b, err := s.bs.Get(ctx, c)
			ch <- got{b, err}
		}(want[i])
	}
	for i := 0; i < serveAhead; i++ {
		launch(i)
	}
	for i, c := range want {
		var g got
		if ahead[i] != nil {
			g = <-ahead[i]
		} else {
			g.b, g.err = s.bs.Get(ctx, c)
		}
		launch(i + serveAhead)
		progress()
		// A block missing, unreadable or larger than any importer makes
		// is "don't have": the requester tries elsewhere.
		var err error
		if g.err == nil && len(g.b.RawData()) <= MaxBlockBytes {
			err = writeBlock(w, g.b.RawData(), true)
		} else {
			err = writeBlock(w, nil, false)
		}
		if ahead[i] != nil {
			<-s.ahead
		}
		next = i + 1
		if err != nil {
			return err
		}
	}
	return nil
}
