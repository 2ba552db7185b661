package round

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/linking"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/ipld/go-ipld-prime/traversal"

	"github.com/swarmtrain/swarmtrain/verify"
)

// TestLedgerIsTraversableIPLD: a sealed ledger, read with go-ipld-prime
// alone (no schema, no swarmtrain decoder) over the store's blocks,
// resolves <record>/body/model and <record>/body/prev/body/model to the
// models the rounds sealed — what `ipfs dag get` does — and a recursive
// walk from the head reaches every block the ledger is made of: what
// `ipfs pin add --recursive <head>` pins and `ledger --refs` lists.
func TestLedgerIsTraversableIPLD(t *testing.T) {
	l := sealLedger(t, 3, 2)
	ctx := context.Background()
	ls := l.store.LinkSystem()
	head := l.records[len(l.records)-1]
	root, err := ls.Load(linking.LinkContext{Ctx: ctx}, cidlink.Link{Cid: head}, basicnode.Prototype.Any)
	if err != nil {
		t.Fatal(err)
	}
	focus := func(path string) datamodel.Node {
		t.Helper()
		var got datamodel.Node
		prog := traversal.Progress{Cfg: &traversal.Config{Ctx: ctx, LinkSystem: ls, LinkTargetNodePrototypeChooser: basicnode.Chooser}}
		if err := prog.Focus(root, datamodel.ParsePath(path), func(_ traversal.Progress, n datamodel.Node) error {
			got = n
			return nil
		}); err != nil {
			t.Fatalf("%s/%s: %v", head, path, err)
		}
		return got
	}
	// The models are small enough to be one raw block: the path resolves
	// to the checkpoint's bytes.
	for path, want := range map[string]cid.Cid{
		"body/model":                            l.outcomes[2].Record.Model,
		"body/prev/body/model":                  l.outcomes[1].Record.Model,
		"body/prev/body/prev/body/model":        l.outcomes[0].Record.Model,
		"body/prev/body/prev/body/base":         l.manifest.InitialModel,
		"body/entries/0/contribution/body/base": l.outcomes[1].Record.Model,
	} {
		file, err := l.store.ReadFile(ctx, want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := focus(path).AsBytes()
		if err != nil || !bytes.Equal(got, file) {
			t.Errorf("%s: %d bytes (%v), want the %d of model %s", path, len(got), err, len(file), want)
		}
	}
	if _, err := focus("body/prev/body/prev/body").LookupByString("prev"); err == nil {
		t.Error("round 0's record has a prev")
	}

	// The walk from the head reaches every block in the store but the
	// manifest (linked by no record: the swarm ID names it).
	refs, err := l.store.Refs(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs.Missing) != 0 {
		t.Errorf("missing blocks %v", refs.Missing)
	}
	// The blockstore keys blocks by multihash (AllKeysChan gives them
	// back as raw CIDs), so blocks are compared by hash.
	reached := map[string]bool{}
	for _, c := range refs.Blocks {
		if reached[string(c.Hash())] {
			t.Errorf("%s listed twice", c)
		}
		reached[string(c.Hash())] = true
	}
	keys, err := l.store.Blockstore().AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := l.store.Head(ctx, "swarm")
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for c := range keys {
		stored++
		if !reached[string(c.Hash())] && string(c.Hash()) != string(manifest.Hash()) {
			t.Errorf("stored block %s is not reached from the head", c)
		}
	}
	if len(refs.Blocks) != stored-1 {
		t.Errorf("%d blocks reached, %d stored besides the manifest", len(refs.Blocks), stored-1)
	}
	if !refs.Blocks[0].Equals(head) {
		t.Errorf("the walk starts at %s, not the head", refs.Blocks[0])
	}
}

// TestEquivocationEvidenceIsLinked: the two signed blocks of an
// equivocation are links in the entry, so a pin of the record keeps the
// proof; other evidence stays text.
func TestEquivocationEvidenceIsLinked(t *testing.T) {
	a, _ := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	b, _ := cid.Decode("bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm")
	got := evidenceBlocks(verify.ReasonEquivocation+": two contributions for round 3", a.String()+" "+b.String())
	if got == nil || len(*got) != 2 || !(*got)[0].Equals(a) || !(*got)[1].Equals(b) {
		t.Fatalf("equivocation evidence links %v", got)
	}
	if got := evidenceBlocks(verify.ReasonDuplicate+": same payload as p", "p"); got != nil {
		t.Fatalf("duplicate evidence became links %v", *got)
	}
}
