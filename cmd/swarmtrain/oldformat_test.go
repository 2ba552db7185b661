package main

import (
	"context"
	"path/filepath"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipld/go-ipld-prime"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	"github.com/ipld/go-ipld-prime/node/basicnode"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// TestOldFormatDataDirIsRefusedInOneLine: a data dir whose swarm manifest
// was written before records were IPLD (the body a byte string) is
// refused by start and by ledger in one line saying it cannot be migrated
// and what to do, not with a decoder's error.
func TestOldFormatDataDirIsRefusedInOneLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "old")
	store, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The old envelope: what matters is the body as bytes.
	n, err := qp.BuildMap(basicnode.Prototype.Any, 4, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "kind", qp.String(record.KindSwarm))
		qp.MapEntry(ma, "body", qp.Bytes([]byte{0xa0}))
		qp.MapEntry(ma, "signer", qp.Bytes([]byte("key")))
		qp.MapEntry(ma, "sig", qp.Bytes([]byte("sig")))
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ipld.Encode(n, dagcbor.Encode)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := record.CIDBuilder().Sum(raw)
	b, _ := blocks.NewBlockWithCid(raw, c)
	ctx := context.Background()
	if err := store.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := store.SetHead(ctx, storage.HeadSwarm, c); err != nil {
		t.Fatal(err)
	}
	store.Close()

	code, _, stderr := swarmtrain(t, "ledger", "--verify", "--data-dir", dir)
	oneLine(t, code, stderr, "cannot be migrated")
	mnist := testdata.MNISTDir(t)
	code, _, stderr = swarmtrain(t, "start", "--config", "../../examples/mnist-mlp.yaml", "--data-dir", dir, "--dataset-dir", mnist)
	t.Logf("start: %s", stderr)
	oneLine(t, code, stderr, "data dir "+dir+": record "+c.String()+": swarm record: written by an older swarmtrain")
}
