package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/crypto/chacha20"
)

// TestFileLayoutIsUnixfsV1_2025 checks the shape boxo's importer gives our
// files, on a file of 2,148 chunks (more than 2 x 1024, so far above the
// 174 links where boxo's default layout would already branch): a balanced
// DAG whose nodes hold up to 1024 links, raw leaves, CIDv1 dag-pb inner
// nodes hashed with SHA2-256. The chunks are 16 bytes here to keep the test
// small; the layout does not depend on the chunk size.
func TestFileLayoutIsUnixfsV1_2025(t *testing.T) {
	ctx := context.Background()
	const chunk, chunks = 16, 2*MaxLinks + 100
	data := make([]byte, chunk*chunks)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	dag := merkledag.NewDAGService(blockservice.New(blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore())), nil))
	root, err := importFile(dag, bytes.NewReader(data), chunk, MaxLinks)
	if err != nil {
		t.Fatal(err)
	}
	if p := root.Prefix(); p.Version != 1 || p.Codec != cid.DagProtobuf || p.MhType != mh.SHA2_256 {
		t.Fatalf("root %s: want CIDv1 dag-pb sha2-256", root)
	}
	nd, err := dag.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	// 2,148 leaves under 1024-link nodes: two levels, children of
	// 1024, 1024 and 100 leaves.
	if n := len(nd.Links()); n != 3 {
		t.Fatalf("root has %d links, want 3 (1024 + 1024 + 100 leaves)", n)
	}
	leaves := 0
	for i, l := range nd.Links() {
		child, err := dag.Get(ctx, l.Cid)
		if err != nil {
			t.Fatal(err)
		}
		want := []int{MaxLinks, MaxLinks, 100}[i]
		if len(child.Links()) != want {
			t.Fatalf("child %d has %d links, want %d", i, len(child.Links()), want)
		}
		for _, leaf := range child.Links() {
			if p := leaf.Cid.Prefix(); p.Codec != cid.Raw || p.Version != 1 {
				t.Fatalf("leaf %s is not a CIDv1 raw block", leaf.Cid)
			}
			leaves++
		}
	}
	if leaves != chunks {
		t.Fatalf("%d leaves, want %d", leaves, chunks)
	}
	got, err := readFile(ctx, dag, root)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	// With boxo's default of 174 links the same bytes get another CID:
	// the link count is part of what makes our CIDs Kubo's.
	legacy, err := importFile(discardDAG{}, bytes.NewReader(data), chunk, 174)
	if err != nil {
		t.Fatal(err)
	}
	if legacy.Equals(root) {
		t.Fatal("174 and 1024 links gave the same CID")
	}
	// A file of exactly 1024 chunks fits one node; one chunk more adds a level.
	for _, c := range []struct{ chunks, links int }{{MaxLinks, MaxLinks}, {MaxLinks + 1, 2}} {
		r, err := importFile(dag, bytes.NewReader(data[:c.chunks*chunk]), chunk, MaxLinks)
		if err != nil {
			t.Fatal(err)
		}
		if nd, err := dag.Get(ctx, r); err != nil || len(nd.Links()) != c.links {
			t.Fatalf("%d chunks: root links %v (%v), want %d", c.chunks, nd, err, c.links)
		}
	}
}

// kuboRandom is the byte stream Kubo's CID-profile tests add
// (test/cli/testutils/random_deterministic.go): ChaCha20 keyed with the
// SHA-256 of the seed, zero nonce, size bytes.
func kuboRandom(t testing.TB, size int64, seed string) io.Reader {
	key := sha256.Sum256([]byte(seed))
	var nonce [chacha20.NonceSize]byte
	c, err := chacha20.NewUnauthenticatedCipher(key[:], nonce[:])
	if err != nil {
		t.Fatal(err)
	}
	return io.LimitReader(keystream{c}, size)
}

type keystream struct{ c *chacha20.Cipher }

func (k keystream) Read(p []byte) (int, error) {
	clear(p)
	k.c.XORKeyStream(p, p)
	return len(p), nil
}

// TestFileCIDsMatchKubo pins CIDs Kubo itself computed under its
// unixfs-v1-2025 profile, from Kubo's test/cli/cid_profiles_test.go
// (TestCIDProfiles: "hello world", and 1024 MiB and 1025 MiB of
// kuboRandom with seed "v1-2025-seed" — at 1024 links and one chunk over,
// where the DAG gains a level). Our importer must give the same CIDs.
func TestFileCIDsMatchKubo(t *testing.T) {
	hello, err := FileCID([]byte("hello world"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"; hello.String() != want {
		t.Errorf(`"hello world": %s, Kubo gives %s`, hello, want)
	}
	if testing.Short() {
		t.Skip("the 1 GiB files take a few seconds each: make test-long")
	}
	for _, c := range []struct {
		mib  int64
		want string
	}{
		{1024, "bafybeihmf37wcuvtx4hpu7he5zl5qaf2ineo2lqlfrapokkm5zzw7zyhvm"},
		{1025, "bafybeihmzokxxjqwxjcryerhp5ezpcog2wcawfryb2xm64xiakgm4a5jue"},
	} {
		start := time.Now()
		got, err := ReaderCID(kuboRandom(t, c.mib<<20, "v1-2025-seed"))
		if err != nil {
			t.Fatal(err)
		}
		if got.String() != c.want {
			t.Errorf("%d MiB: %s, Kubo gives %s", c.mib, got, c.want)
		}
		t.Logf("%d MiB: %s in %v", c.mib, got, time.Since(start).Round(time.Millisecond))
	}
}
