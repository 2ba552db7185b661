package round

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// TestOverlapSealsAuditsAndRechecks: with overlapped rounds every honest
// contribution is built on the previous round's base (rounds 0 and 1 on
// the initial model), accepted, replayed exactly by its audit from that
// base, and the flipper is still caught; each round's next seed is the one
// a contributor computes before the seal (OverlapSeed); the ledger rechecks.
func TestOverlapSealsAuditsAndRechecks(t *testing.T) {
	l := sealLedgerOverlap(t, 4, 2, true, true)
	prevBase := l.manifest.InitialModel
	for r, out := range l.outcomes {
		rec := out.Record
		for _, e := range rec.Entries {
			b, err := l.store.Get(context.Background(), e.Contribution)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := record.OpenBlock[record.Contribution](b)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Base.Equals(prevBase) {
				t.Errorf("round %d: %s built on %s, want the previous round's base %s", r, e.Peer, c.Base, prevBase)
			}
			honest := e.Peer != l.flipper && verify.Kind(e.Reason) != verify.ReasonDuplicate
			if honest && (e.Verdict != record.VerdictAccepted || e.Audit == nil) {
				t.Errorf("round %d: honest %s %s %q, audited %v", r, e.Peer, e.Verdict, e.Reason, e.Audit != nil)
			}
			if e.Peer == l.flipper && e.Verdict == record.VerdictAccepted {
				t.Errorf("round %d: the flipper was accepted", r)
			}
		}
		if want := OverlapSeed(seedOf(l, r), rec.Base); rec.Seed != want {
			t.Errorf("round %d: next seed %d, want %d (known before the seal)", r, rec.Seed, want)
		}
		prevBase = rec.Base
	}
	sum, err := Recheck(context.Background(), l.store)
	if err != nil {
		t.Fatalf("recheck of an overlapped ledger: %v", err)
	}
	if sum.Models != 4 || sum.Audits == 0 {
		t.Errorf("recheck: %+v, want 4 models and the audits", sum)
	}
}

// seedOf is round r's shard seed in l.
func seedOf(l *ledger, r int) int64 {
	if r == 0 {
		return l.manifest.Seed
	}
	return l.outcomes[r-1].Record.Seed
}

// TestOverlapRefusesEveryOtherBase: in an overlapped round, tier 1 accepts
// an update built on the previous round's base only — one built on the
// round's own base (not what the rule says) or two rounds behind is stale.
func TestOverlapRefusesEveryOtherBase(t *testing.T) {
	l := sealLedgerOverlap(t, 2, 2, false, true)
	st := l.outcomes[1].Next // round 2: base M_2, built on M_1
	twoBehind := l.outcomes[0].Next.Prev
	if !twoBehind.Equals(l.manifest.InitialModel) || !st.Prev.Equals(l.outcomes[0].Next.Base) {
		t.Fatalf("state chain: prev %s, two behind %s", st.Prev, twoBehind)
	}
	codec, err := gradient.NewCodec(l.p.Codec, l.p.Density)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var in []Contribution
	for i, base := range []cid.Cid{st.Prev, st.Base, twoBehind} {
		vec := make([]float32, len(st.Params))
		for j := range vec {
			vec[j] = float32(rng.NormFloat64()) * 1e-3
		}
		payload, err := gradient.Marshal(codec, vec)
		if err != nil {
			t.Fatal(err)
		}
		pc, _ := verify.PayloadCID(payload)
		seed := st.Seed
		c := &record.Contribution{Round: st.Round, Peer: string(rune('a' + i)), Base: base, Payload: pc, Codec: l.p.Codec, Seed: &seed}
		in = append(in, Contribution{Record: c, Block: pc, Payload: payload})
	}
	out, err := Run(context.Background(), l.p, st, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", verify.ReasonStale, verify.ReasonStale} {
		e := out.Record.Entries[i]
		if verify.Kind(e.Reason) != want || (want == "") != (e.Verdict == record.VerdictAccepted) {
			t.Errorf("update built on %s: %s %q, want %q", in[i].Record.Base, e.Verdict, e.Reason, want)
		}
	}
}
