package storage

import (
	"context"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
)

// linksTo puts a dag-cbor block {"a": [links...]} in the store.
func linksTo(t testing.TB, s *Store, links ...cid.Cid) cid.Cid {
	t.Helper()
	n, err := qp.BuildMap(basicnode.Prototype.Any, 1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "a", qp.List(int64(len(links)), func(la datamodel.ListAssembler) {
			for _, l := range links {
				qp.ListEntry(la, qp.Link(cidlink.Link{Cid: l}))
			}
		}))
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ipld.Encode(n, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	return put(t, s, cid.DagCBOR, raw)
}

func put(t testing.TB, s *Store, codec uint64, raw []byte) cid.Cid {
	t.Helper()
	c, err := cid.V1Builder{Codec: codec, MhType: mh.SHA2_256}.Sum(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := blocks.NewBlockWithCid(raw, c)
	if err := s.Put(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRefsWalksFilesAndRecords: a walk from a dag-cbor block follows its
// links into a multi-block UnixFS file (dag-pb nodes, raw leaves) and to
// raw blocks, lists each block once however often it is linked, and names
// the linked blocks the store lacks instead of failing.
func TestRefsWalksFilesAndRecords(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 3*ChunkSize+10) // 4 raw leaves under one dag-pb node
	for i := range data {
		data[i] = byte(i % 253)
	}
	file, err := s.AddFile(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	payload := put(t, s, cid.Raw, []byte("payload"))
	absent, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte("withheld"))
	inner := linksTo(t, s, file, payload, absent)
	root := linksTo(t, s, inner, file, payload)
	refs, err := s.Refs(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	// root, inner, the file's root node, its 4 leaves, the payload.
	if len(refs.Blocks) != 8 || !refs.Blocks[0].Equals(root) {
		t.Fatalf("refs %v, want 8 blocks from %s", refs.Blocks, root)
	}
	if len(refs.Missing) != 1 || !refs.Missing[0].Equals(absent) {
		t.Fatalf("missing %v, want %s", refs.Missing, absent)
	}
}

// FuzzRefs feeds arbitrary bytes as a stored dag-cbor or dag-pb block (a
// peer's block, as bitswap stores them): the walk may refuse it, naming
// it, but never panics.
func FuzzRefs(f *testing.F) {
	s, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	payload := put(f, s, cid.Raw, []byte("payload"))
	n, _ := qp.BuildMap(basicnode.Prototype.Any, 1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "a", qp.Link(cidlink.Link{Cid: payload}))
	})
	seed, _ := ipld.Encode(n, dagcbor.Encode)
	f.Add(seed, true)
	file, _ := s.AddFile(context.Background(), make([]byte, 2*ChunkSize))
	b, _ := s.Get(context.Background(), file)
	f.Add(b.RawData(), false)
	f.Fuzz(func(t *testing.T, raw []byte, cbor bool) {
		codec := uint64(cid.DagProtobuf)
		if cbor {
			codec = cid.DagCBOR
		}
		c := put(t, s, codec, raw)
		_, _ = s.Refs(context.Background(), c)
	})
}
