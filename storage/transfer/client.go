package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs"
	unixfspb "github.com/ipfs/boxo/ipld/unixfs/pb"
	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Streams is how many streams one fetch spreads a DAG level over: one.
// Several would let the store reads and hashing of different blocks run on
// different cores, but they share the one secure connection, and yamux
// grows each stream's flow-control window separately (from 256 KiB), so
// streams carrying a part of the file each spend longer at a small window.
// Measured side by side (benchmarks/README.md, BenchmarkTransfer with
// TRANSFER_STREAMS=1), one stream was never slower than four and often
// faster (500 MB: 247 against 158 MB/s); FetchStreams takes any count.
const Streams = 1

// maxDepth bounds the DAG's depth. A balanced DAG of 174-link nodes and
// 256 KiB leaves holds 1.7 TiB at depth 4; 16 is only a guard against a
// hostile chain of single-child nodes.
const maxDepth = 16

// maxBlocks bounds the blocks one fetch will ask for (with 1 MiB leaves,
// a 1 TiB file): every child must carry at least one byte, so a DAG cannot
// make a requester loop over empty blocks, but tiny leaves could still
// make it keep millions of them.
const maxBlocks = 1 << 20

// bulkMinBytes is the smallest file fetched over a bulk TCP connection
// when the server offers one: 16 MiB. Asking costs about two round trips
// (the offer, then the TCP handshake and hello), nothing next to a
// checkpoint's transfer but more than a 1 MiB payload's on a slow link;
// and below a few MiB the stream's CPU cost, which the bulk channel saves,
// does not matter.
const bulkMinBytes = 16 << 20

// bulkDialTimeout bounds the TCP dial to an offered address. The path is
// the one the libp2p connection already takes, so a dial that is not done
// in 3 s is a firewall dropping it: fall back to the stream.
const bulkDialTimeout = 3 * time.Second

// ErrDontHave is returned when the peer does not have a block of the file.
var ErrDontHave = errors.New("peer does not have the block")

// File is a fetched UnixFS file: its bytes and every block of its DAG,
// each checked against its CID (leaves are slices of Data, not copies).
type File struct {
	Data   []byte
	Blocks []blocks.Block
	// Bulk says whether the blocks came over a bulk TCP connection rather
	// than the libp2p stream (tests and benchmarks look).
	Bulk bool
}

// Fetch reads the UnixFS file root (a balanced DAG with raw or dag-pb
// leaves, or a single raw block) from peer p over up to Streams streams.
// A file of more than maxBytes is refused before its bytes are read.
// Errors name the peer.
func Fetch(ctx context.Context, h host.Host, p peer.ID, root cid.Cid, maxBytes int64) (*File, error) {
	return FetchStreams(ctx, h, p, root, maxBytes, Streams)
}

// FetchStreams is Fetch over up to streams streams (benchmarks/transfer
// compares counts; nodes use Fetch).
func FetchStreams(ctx context.Context, h host.Host, p peer.ID, root cid.Cid, maxBytes int64, streams int) (*File, error) {
	if streams < 1 {
		return nil, fmt.Errorf("transfer: %d streams", streams)
	}
	var mu sync.Mutex
	var open []io.Closer // streams and bulk connections
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			reset(c)
		}
	})
	defer stop()
	track := func(c io.Closer) {
		mu.Lock()
		open = append(open, c)
		mu.Unlock()
	}
	dial := func() (io.ReadWriter, error) {
		// A checkpoint never crosses a relay: a relayed connection carries
		// a hole punch's few messages (node/p2p's RelayResources cut it at
		// 1 MiB). With only such a connection, fail at once so the caller
		// falls back to bitswap, whose streams wait for the direct
		// connection DCUtR makes; with a direct one, the stream uses it.
		if h.Network().Connectedness(p) == network.Limited {
			return nil, fmt.Errorf("transfer: only a relayed connection to %s", p)
		}
		st, err := h.NewStream(ctx, p, ID)
		if err != nil {
			return nil, err
		}
		track(st)
		return stallGuard{st}, nil
	}
	upgrade := func(c *conn) (*conn, error) { return upgradeBulk(ctx, h.ID(), c, track) }
	f, err := fetchWith(dial, upgrade, root, maxBytes, streams)
	mu.Lock()
	for _, c := range open {
		if err != nil {
			reset(c)
		} else {
			_ = c.Close()
		}
	}
	mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("transfer: %s from %s: %w", root, p, err)
	}
	return f, nil
}

// reset drops a stream (Reset) or a connection (Close) after a failure.
func reset(c io.Closer) {
	if r, ok := c.(interface{ Reset() error }); ok {
		_ = r.Reset()
		return
	}
	_ = c.Close()
}

// upgradeBulk asks the server at the other end of c's stream for a bulk
// connection and returns it ready to carry requests, or c itself when
// there is none: not offered, offered on an IP other than the one c's
// connection reaches (a NAT between us, or a server naming someone else's
// address), not reachable in bulkDialTimeout, or refused. An error means
// c's stream itself failed.
func upgradeBulk(ctx context.Context, self peer.ID, c *conn, track func(io.Closer)) (*conn, error) {
	if c.st == nil {
		return c, nil
	}
	if err := writeOfferRequest(c.w); err != nil {
		return nil, err
	}
	o, err := readOffer(c.r)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return c, nil
	}
	there, err := manet.ToIP(c.st.Conn().RemoteMultiaddr())
	if err != nil || !there.Equal(o.ip) {
		return c, nil
	}
	d := net.Dialer{Timeout: bulkDialTimeout}
	tc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(o.ip.String(), strconv.Itoa(o.port)))
	if err != nil {
		return c, nil
	}
	_ = tc.SetDeadline(time.Now().Add(idleTimeout))
	var ok [1]byte
	if err := writeHello(tc, o.token, self); err != nil {
		_ = tc.Close()
		return c, nil
	}
	if _, err := io.ReadFull(tc, ok[:]); err != nil || ok[0] != statusHave {
		_ = tc.Close()
		return c, nil
	}
	_ = tc.SetDeadline(time.Time{})
	track(tc)
	// The stream is done with: closing it frees the server's slot.
	_ = c.st.Close()
	g := stallGuard{tc}
	return &conn{r: bufio.NewReaderSize(g, bufBytes), w: bufio.NewWriterSize(g, bufBytes), bulk: true}, nil
}

// stallGuard gives every read of a stream or connection idleTimeout to
// make progress: a peer that stops sending fails the fetch (and the caller
// falls back) instead of holding it until the caller's deadline.
type stallGuard struct{ deadlineRW }

type deadlineRW interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
}

func (g stallGuard) Read(p []byte) (int, error) {
	_ = g.SetReadDeadline(time.Now().Add(idleTimeout))
	return g.deadlineRW.Read(p)
}

// task is one block to fetch and where its content goes in the file.
type task struct {
	c         cid.Cid
	off, size uint64
}

// conn is one stream or bulk connection of a fetch.
type conn struct {
	r    *bufio.Reader
	w    *bufio.Writer
	st   network.Stream // the libp2p stream, if it is one (it may be upgraded)
	bulk bool
}

// fetcher is the state of one fetch: the file's buffer and the blocks.
type fetcher struct {
	buf    []byte
	mu     sync.Mutex
	blocks []blocks.Block
	nblock int
}

// fetch runs the protocol over streams from dial; the tests and the fuzz
// target drive it without a network.
func fetch(dial func() (io.ReadWriter, error), root cid.Cid, maxBytes int64, streams int) (*File, error) {
	return fetchWith(dial, nil, root, maxBytes, streams)
}

// fetchWith is fetch with upgrade (nil: none) applied to every stream of a
// file of bulkMinBytes or more, once the root says how big it is.
func fetchWith(dial func() (io.ReadWriter, error), upgrade func(*conn) (*conn, error), root cid.Cid, maxBytes int64, streams int) (*File, error) {
	c0, err := newConn(dial)
	if err != nil {
		return nil, err
	}
	if err := writeRequest(c0.w, []cid.Cid{root}); err != nil {
		return nil, err
	}
	have, n, err := readBlockHeader(c0.r, MaxBlockBytes)
	if err != nil {
		return nil, err
	}
	if !have {
		return nil, fmt.Errorf("root %s: %w", root, ErrDontHave)
	}
	if int64(n) > maxBytes {
		return nil, fmt.Errorf("file %s is over the limit of %d bytes", root, maxBytes)
	}
	raw := make([]byte, n)
	if err := readChecked(c0.r, root, raw); err != nil {
		return nil, err
	}
	f := &fetcher{}
	switch root.Prefix().Codec {
	case cid.Raw:
		return &File{Data: raw, Blocks: []blocks.Block{mustBlock(raw, root)}}, nil
	case cid.DagProtobuf:
	default:
		return nil, fmt.Errorf("root %s: codec %#x is not a UnixFS file", root, root.Prefix().Codec)
	}
	size, err := fileSize(root, raw)
	if err != nil {
		return nil, err
	}
	if size > uint64(maxBytes) {
		return nil, fmt.Errorf("file %s is %d bytes, over the limit of %d", root, size, maxBytes)
	}
	f.buf = make([]byte, size)
	level, err := f.node(task{c: root, size: size}, raw)
	if err != nil {
		return nil, err
	}
	if size < bulkMinBytes {
		upgrade = nil
	}
	if upgrade != nil {
		if u, err := upgrade(c0); err == nil {
			c0 = u
		} else {
			// A server from before the bulk channel resets the stream on
			// an empty want list: go on over a fresh stream, not asking
			// again.
			upgrade = nil
			if c0, err = newConn(dial); err != nil {
				return nil, err
			}
		}
	}
	conns := []*conn{c0}
	for depth := 1; len(level) > 0; depth++ {
		if depth > maxDepth {
			return nil, fmt.Errorf("file %s: DAG deeper than %d", root, maxDepth)
		}
		w := min(streams, len(level))
		for len(conns) < w {
			c, err := newConn(dial)
			if err != nil {
				return nil, err
			}
			if upgrade != nil {
				if c, err = upgrade(c); err != nil {
					return nil, err
				}
			}
			conns = append(conns, c)
		}
		next := make([][]task, w)
		errs := make([]error, w)
		var wg sync.WaitGroup
		for i := 0; i < w; i++ {
			part := level[i*len(level)/w : (i+1)*len(level)/w]
			wg.Add(1)
			go func() {
				defer wg.Done()
				next[i], errs[i] = f.fetchTasks(conns[i], part)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		level = level[:0]
		for _, n := range next {
			level = append(level, n...)
		}
	}
	bulk := true
	for _, c := range conns {
		bulk = bulk && c.bulk
	}
	return &File{Data: f.buf, Blocks: f.blocks, Bulk: bulk}, nil
}

func newConn(dial func() (io.ReadWriter, error)) (*conn, error) {
	rw, err := dial()
	if err != nil {
		return nil, err
	}
	c := &conn{r: bufio.NewReaderSize(rw, bufBytes), w: bufio.NewWriterSize(rw, bufBytes)}
	if g, ok := rw.(stallGuard); ok {
		c.st, _ = g.deadlineRW.(network.Stream)
	}
	return c, nil
}

// fetchTasks asks for part, MaxWant at a time, and returns the children of
// the dag-pb nodes among them, in order, once every block is checked.
func (f *fetcher) fetchTasks(c *conn, part []task) ([]task, error) {
	k := checker{sem: make(chan struct{}, checkAhead)}
	next, err := f.readTasks(c, part, &k)
	if kerr := k.wait(); err == nil {
		err = kerr
	}
	if err != nil {
		return nil, err
	}
	return next, nil
}

// checkAhead is how many leaves may wait to be hashed while the next are
// read: hashing a leaf costs about what reading it does, so one goroutine
// hashing beside the reader keeps two cores busy; two absorb a slow one.
const checkAhead = 2

// checker hashes leaves on other goroutines and keeps the first mismatch.
type checker struct {
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

// check hashes data against c and runs ok if it matches.
func (k *checker) check(c cid.Cid, data []byte, ok func()) {
	k.sem <- struct{}{}
	k.wg.Add(1)
	go func() {
		defer func() {
			<-k.sem
			k.wg.Done()
		}()
		if err := checkSum(c, data); err != nil {
			k.mu.Lock()
			if k.err == nil {
				k.err = err
			}
			k.mu.Unlock()
			return
		}
		ok()
	}()
}

// wait waits for every check and returns the first mismatch.
func (k *checker) wait() error {
	k.wg.Wait()
	return k.err
}

// readTasks is fetchTasks' reading: leaves go to k to be checked.
func (f *fetcher) readTasks(c *conn, part []task, k *checker) ([]task, error) {
	var next []task
	var tmp []byte
	for len(part) > 0 {
		batch := part[:min(len(part), MaxWant)]
		part = part[len(batch):]
		want := make([]cid.Cid, len(batch))
		for i, t := range batch {
			want[i] = t.c
		}
		if err := writeRequest(c.w, want); err != nil {
			return nil, err
		}
		for _, t := range batch {
			have, n, err := readBlockHeader(c.r, MaxBlockBytes)
			if err != nil {
				return nil, err
			}
			if !have {
				return nil, fmt.Errorf("block %s: %w", t.c, ErrDontHave)
			}
			if t.c.Prefix().Codec == cid.Raw {
				// A raw leaf is the file's bytes: read it into its place.
				if uint64(n) != t.size {
					return nil, fmt.Errorf("leaf %s is %d bytes, its parent says %d", t.c, n, t.size)
				}
				dst := f.buf[t.off : t.off+t.size]
				if _, err := io.ReadFull(c.r, dst); err != nil {
					return nil, fmt.Errorf("block %s: %w", t.c, noEOF(err))
				}
				leaf := t.c
				k.check(leaf, dst, func() { f.add(mustBlock(dst, leaf)) })
				continue
			}
			if cap(tmp) < n {
				tmp = make([]byte, n)
			}
			raw := tmp[:n]
			if err := readChecked(c.r, t.c, raw); err != nil {
				return nil, err
			}
			own := append([]byte(nil), raw...)
			kids, err := f.node(t, own)
			if err != nil {
				return nil, err
			}
			next = append(next, kids...)
		}
	}
	return next, nil
}

// node checks a hash-checked dag-pb block against what its parent said of
// it, copies its inline data into place, keeps the block and returns its
// children with their places in the file.
func (f *fetcher) node(t task, raw []byte) ([]task, error) {
	if t.c.Prefix().Codec != cid.DagProtobuf {
		return nil, fmt.Errorf("block %s: codec %#x is not part of a UnixFS file", t.c, t.c.Prefix().Codec)
	}
	pn, err := merkledag.DecodeProtobuf(raw)
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", t.c, err)
	}
	fsn, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", t.c, err)
	}
	if ty := fsn.Type(); ty != unixfspb.Data_File && ty != unixfspb.Data_Raw {
		return nil, fmt.Errorf("block %s: UnixFS %s, not a file", t.c, ty)
	}
	links := pn.Links()
	sizes := fsn.BlockSizes()
	if len(links) != len(sizes) {
		return nil, fmt.Errorf("block %s: %d links but %d sizes", t.c, len(links), len(sizes))
	}
	if len(links) > MaxWant {
		return nil, fmt.Errorf("block %s: %d links, over %d", t.c, len(links), MaxWant)
	}
	data := fsn.Data()
	if fsn.FileSize() != t.size {
		return nil, fmt.Errorf("block %s: says %d bytes, its parent says %d", t.c, fsn.FileSize(), t.size)
	}
	sum := uint64(len(data))
	for i, s := range sizes {
		if s == 0 {
			return nil, fmt.Errorf("block %s: link %d is empty", t.c, i)
		}
		if sum+s < sum || sum+s > t.size {
			return nil, fmt.Errorf("block %s: its parts add up to more than its %d bytes", t.c, t.size)
		}
		sum += s
	}
	if sum != t.size {
		return nil, fmt.Errorf("block %s: its parts add up to %d bytes, not %d", t.c, sum, t.size)
	}
	copy(f.buf[t.off:], data)
	kids := make([]task, len(links))
	off := t.off + uint64(len(data))
	for i, l := range links {
		if l.Cid.Prefix().Codec == cid.Raw && sizes[i] > MaxBlockBytes {
			return nil, fmt.Errorf("block %s: leaf %d of %d bytes, over %d", t.c, i, sizes[i], MaxBlockBytes)
		}
		kids[i] = task{c: l.Cid, off: off, size: sizes[i]}
		off += sizes[i]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nblock += len(kids)
	if f.nblock > maxBlocks {
		return nil, fmt.Errorf("block %s: the file has over %d blocks", t.c, maxBlocks)
	}
	f.blocks = append(f.blocks, mustBlock(raw, t.c))
	return kids, nil
}

func (f *fetcher) add(b blocks.Block) {
	f.mu.Lock()
	f.blocks = append(f.blocks, b)
	f.mu.Unlock()
}

// readChecked fills dst from r and checks that it hashes to c.
func readChecked(r io.Reader, c cid.Cid, dst []byte) error {
	if _, err := io.ReadFull(r, dst); err != nil {
		return fmt.Errorf("block %s: %w", c, noEOF(err))
	}
	return checkSum(c, dst)
}

// checkSum checks that data hashes to c.
func checkSum(c cid.Cid, dst []byte) error {
	got, err := c.Prefix().Sum(dst)
	if err != nil {
		return fmt.Errorf("block %s: %w", c, err)
	}
	if !got.Equals(c) {
		return fmt.Errorf("block %s: the peer sent bytes that hash to %s", c, got)
	}
	return nil
}

// fileSize is the size a dag-pb root says its file has.
func fileSize(c cid.Cid, raw []byte) (uint64, error) {
	pn, err := merkledag.DecodeProtobuf(raw)
	if err != nil {
		return 0, fmt.Errorf("root %s: %w", c, err)
	}
	fsn, err := unixfs.FSNodeFromBytes(pn.Data())
	if err != nil {
		return 0, fmt.Errorf("root %s: %w", c, err)
	}
	return fsn.FileSize(), nil
}

// mustBlock wraps bytes already checked against c.
func mustBlock(data []byte, c cid.Cid) blocks.Block {
	b, _ := blocks.NewBlockWithCid(data, c) // checks only under u.Debug; we checked
	return b
}
