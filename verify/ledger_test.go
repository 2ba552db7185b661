package verify

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

func fakeCID(s string) cid.Cid {
	c, _ := cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum([]byte(s))
	return c
}

// buildLedger writes a manifest and n round records signed by key (or, for
// the round named by forgeRound, by another key), and returns the store.
func buildLedger(t *testing.T, n int, forgeRound int64, breakLink bool) *storage.Store {
	t.Helper()
	ctx := context.Background()
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	other, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(key)
	s, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, _ := record.Sign(key, &record.SwarmManifest{Name: "t", Coordinator: id.String(), InitialModel: fakeCID("m0")})
	s.Put(ctx, m)
	s.SetHead(ctx, "swarm", m.Cid())
	base := fakeCID("m0")
	var prev *cid.Cid
	for r := int64(0); r < int64(n); r++ {
		model := fakeCID("m" + string(rune('1'+r)))
		if breakLink && r == 1 {
			base = fakeCID("elsewhere")
		}
		signer := key
		if r == forgeRound {
			signer = other
		}
		b, err := record.Sign(signer, &record.RoundRecord{Swarm: m.Cid().String(), Round: r, Prev: prev, Base: base, Model: model,
			Entries: []record.Entry{{Peer: "p", Contribution: fakeCID("c"), Payload: fakeCID("x"), Verdict: "accepted"}}})
		if err != nil {
			t.Fatal(err)
		}
		s.Put(ctx, b)
		c := b.Cid()
		prev, base = &c, model
		s.SetHead(ctx, "ledger", c)
	}
	return s
}

func TestLedgerVerifies(t *testing.T) {
	sum, err := Ledger(context.Background(), buildLedger(t, 3, -1, false))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rounds != 3 || sum.Accepted != 3 || sum.Peers != 1 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestLedgerNamesTheBadRecord(t *testing.T) {
	if _, err := Ledger(context.Background(), buildLedger(t, 3, 1, false)); err == nil || !strings.Contains(err.Error(), "(round 1): signed by") {
		t.Fatalf("forged signer: %v", err)
	}
	if _, err := Ledger(context.Background(), buildLedger(t, 3, -1, true)); err == nil || !strings.Contains(err.Error(), "(round 0): its model") {
		t.Fatalf("broken link: %v", err)
	}
}
