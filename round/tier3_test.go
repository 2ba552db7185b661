package round

import (
	"context"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// TestAuditsCatchAFlipperAndRecheck: with every candidate audited, each
// honest contribution replays exactly from its committed state and is
// accepted; the peer that sends its honest work negated fails its audit (a
// proven fault), is excluded the next two rounds, and the whole ledger
// rechecks.
func TestAuditsCatchAFlipperAndRecheck(t *testing.T) {
	l := sealLedgerWith(t, 4, 2, true)
	for r, out := range l.outcomes {
		for _, e := range out.Record.Entries {
			switch {
			case e.Peer == l.flipper:
				want := verify.ReasonAudit
				if r == 1 || r == 2 {
					want = verify.ReasonExcluded
				}
				if r == 3 {
					want = verify.ReasonAudit // back on probation, audited first, caught again
				}
				if e.Verdict != record.VerdictRejected || verify.Kind(e.Reason) != want {
					t.Errorf("round %d: flipper %s %q, want rejected as %s", r, e.Verdict, e.Reason, want)
				}
			case verify.Kind(e.Reason) == verify.ReasonDuplicate:
				// the copier: tier 1 rejects it before any audit
			default:
				if e.Verdict != record.VerdictAccepted || e.Audit == nil {
					t.Errorf("round %d: honest %s %s %q, audited %v", r, e.Peer, e.Verdict, e.Reason, e.Audit != nil)
				}
			}
		}
		if out.Record.AuditSeed == nil {
			t.Errorf("round %d: no audit seed", r)
		}
	}
	last := l.outcomes[3].Next.Scores[l.flipper]
	if last.ExcludedUntil == nil || *last.ExcludedUntil != 3+1+4 {
		t.Errorf("flipper excluded until %v after its second fault in round 3, want round 8 (2 rounds, doubled)", last.ExcludedUntil)
	}
	if _, err := Recheck(context.Background(), l.store); err != nil {
		t.Fatalf("recheck of an audited ledger: %v", err)
	}
}

// TestRecheckNamesAnAuditItCannotReproduce: a record re-signed with the
// flipper's failed audit turned into a pass, or an audit left out, fails
// the recheck naming the round.
func TestRecheckNamesAnAuditItCannotReproduce(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		edit func(l *ledger, r *record.RoundRecord)
		want string
	}{
		{"audit passed", func(l *ledger, r *record.RoundRecord) {
			for i, e := range r.Entries {
				if e.Peer == l.flipper {
					zero := 0.0
					r.Entries[i].Audit.Payload, r.Entries[i].Audit.PayloadDistance = &e.Payload, &zero
				}
			}
		}, "rechecked accepted"},
		{"audit dropped", func(l *ledger, r *record.RoundRecord) {
			for i, e := range r.Entries {
				if e.Peer != l.flipper && e.Audit != nil {
					r.Entries[i].Audit = nil
					return
				}
			}
		}, "audit"},
		{"exclusion", func(l *ledger, r *record.RoundRecord) {
			for i, s := range r.Scores {
				if s.Peer == l.flipper {
					r.Scores[i].ExcludedUntil = nil
				}
			}
		}, "peer " + ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := sealLedgerWith(t, 1, 2, true)
			l.resignHead(t, l.records[0], func(r *record.RoundRecord) { c.edit(l, r) })
			_, err := Recheck(ctx, l.store)
			if err == nil || !strings.Contains(err.Error(), "(round 0)") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("recheck: %v; want an error naming round 0 and %q", err, c.want)
			}
		})
	}
}

// TestChainRefusesAForeignStart: a contribution whose committed start is
// not where its author's last contribution ended is rejected as chain.
func TestChainRefusesAForeignStart(t *testing.T) {
	l := sealLedgerWith(t, 1, 2, true)
	st := l.outcomes[0].Next
	p := l.p
	p.Audits = 1
	var in []Contribution
	for _, e := range l.outcomes[0].Record.Entries {
		if e.Verdict != record.VerdictAccepted {
			continue // the flipper and the copier: excluded now
		}
		// Replays round 0's contribution in round 1 with the round fields
		// fixed: its start is the zero state, but the chain has moved on.
		c := st.Chain[e.Peer]
		rec := &record.Contribution{Round: st.Round, Peer: e.Peer, Base: st.Base, Payload: c.Payload, Start: &c.Payload, End: &c.End, Seed: &st.Seed}
		in = append(in, Contribution{Record: rec, Block: c.Payload})
	}
	verdicts := make([]verify.Verdict, len(in))
	if err := commitments(p, st, in, verdicts); err != nil {
		t.Fatal(err)
	}
	for i, v := range verdicts {
		if verify.Kind(v.Reason) != verify.ReasonChain {
			t.Errorf("%s: %q, want chain", in[i].Record.Peer, v.Reason)
		}
	}
}

// TestCheckStartBounds: a residual above its previous payload's largest
// value, or an Adam first moment no gradient sequence reaches, is refused.
func TestCheckStartBounds(t *testing.T) {
	p := ParamsOf(testSwarm())
	n := 4
	prev := []float32{0, 0.5, 0, -1}
	ok := append([]float32{0.9, -1, 0.2, 0}, make([]float32, 2*n+1)...)
	if err := CheckStart(p, n, ok, prev); err != nil {
		t.Fatalf("honest-looking state refused: %v", err)
	}
	big := append([]float32{0, 0, 3, 0}, make([]float32, 2*n+1)...)
	if err := CheckStart(p, n, big, prev); err == nil || !strings.Contains(err.Error(), "residual 2") {
		t.Errorf("residual 3 over a payload of max 1: %v", err)
	}
	m := make([]float32, 2*n+1+n)
	m[n] = 1 // m = 1 with v = 0
	if err := CheckStart(p, n, m, prev); err == nil || !strings.Contains(err.Error(), "first moment 0") {
		t.Errorf("adam m without v: %v", err)
	}
}

// TestRecheckReplaysAudits: with the training set, the recheck replays
// every recorded audit. An honest ledger passes; a sealer that recorded
// the flipper's audit as a pass and accepted it — verdict, score and all
// consistent with that — is caught by the replay, naming the round.
func TestRecheckReplaysAudits(t *testing.T) {
	ctx := context.Background()
	l := sealLedgerWith(t, 1, 2, true)
	trainSet := data.Synthetic(2000, 1) // sealLedgerWith's training set
	if _, err := RecheckWith(ctx, l.store, RecheckOptions{AuditData: trainSet}); err != nil {
		t.Fatalf("recheck replaying the audits of an honest seal: %v", err)
	}
	b, err := l.store.Get(ctx, l.records[0])
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := record.OpenBlock[record.RoundRecord](b)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rec.Entries {
		if e.Peer == l.flipper {
			c, err := openContribution(ctx, l.store, e.Contribution, rec.Swarm, 0, e.Peer)
			if err != nil {
				t.Fatal(err)
			}
			zero := 0.0
			rec.Entries[i].Audit.Payload, rec.Entries[i].Audit.End = &e.Payload, c.End
			rec.Entries[i].Audit.PayloadDistance, rec.Entries[i].Audit.EndDistance = &zero, &zero
			rec.Entries[i].Verdict, rec.Entries[i].Reason, rec.Entries[i].Evidence = record.VerdictAccepted, "", ""
		}
	}
	rb, err := record.Sign(l.coordKey, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.store.Put(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if err := l.store.SetHead(ctx, "ledger", rb.Cid()); err != nil {
		t.Fatal(err)
	}
	_, err = RecheckWith(ctx, l.store, RecheckOptions{AuditData: trainSet})
	if err == nil || !strings.Contains(err.Error(), "(round 0)") || !strings.Contains(err.Error(), "recorded audit") {
		t.Errorf("recheck of a faked audit pass: %v; want an error naming round 0 and the audit", err)
	}
}

// FuzzStartState: a start state is bytes a peer serves; decoding it and
// checking its bounds never panics, whatever the bytes.
func FuzzStartState(f *testing.F) {
	p := ParamsOf(testSwarm())
	n := 4
	k, err := p.StateLen(n)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := StateFile(make([]float32, k))
	f.Add(good)
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := StateOf(b, k)
		if err != nil {
			return
		}
		_ = CheckStart(p, n, s, []float32{1, 0, -1, 0})
		_ = CheckStart(p, n, s, nil)
	})
}

// TestColludingIsCosineNotSupport: two updates of one direction on
// disjoint halves of its support are not parallel, but two sharing the
// direction with their own noise are flagged; an unrelated one is not.
func TestColludingIsCosineNotSupport(t *testing.T) {
	dir := []float32{1, -2, 3, -4, 5, -6, 7, -8}
	noisy := func(s float32) []float32 {
		v := make([]float32, len(dir))
		for i, x := range dir {
			v[i] = x + s*float32(i%3-1)
		}
		return v
	}
	other := []float32{8, 7, -6, -5, 4, 3, -2, -1}
	got := Colluding([]string{"a", "b", "c"}, [][]float32{noisy(0.5), noisy(-0.7), other})
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("flagged %v, want [a b]", got)
	}
}

// TestExclusionDoubles: the k-th proven fault excludes for
// ExcludeRounds·2^(k−1) rounds; rejections as excluded do not count.
func TestExclusionDoubles(t *testing.T) {
	p := Params{ExcludeRounds: 8}
	ps := record.PeerScore{Peer: "x"}
	fault := record.Entry{Verdict: record.VerdictRejected, Reason: verify.ReasonAudit + ": replay differs"}
	for i, want := range []int64{0 + 1 + 8, 20 + 1 + 16, 50 + 1 + 32} {
		round := []int64{0, 20, 50}[i]
		verify.DefaultScoreParams().Apply(&ps, round, fault)
		exclude(p, &ps, round, fault)
		if ps.ExcludedUntil == nil || *ps.ExcludedUntil != want {
			t.Fatalf("fault %d in round %d: excluded until %v, want %d", i+1, round, ps.ExcludedUntil, want)
		}
		excluded := record.Entry{Verdict: record.VerdictRejected, Reason: verify.ReasonExcluded + ": until"}
		verify.DefaultScoreParams().Apply(&ps, round+1, excluded)
		exclude(p, &ps, round+1, excluded)
		if *ps.ExcludedUntil != want {
			t.Fatalf("an excluded rejection moved the exclusion to %d", *ps.ExcludedUntil)
		}
	}
}

// otherBuild is a model whose arithmetic drifts from this build's by a
// relative rel on every parameter it hands back, as OpenBLAS's or a GPU's
// reordered sums would (measured: 1.3e-7 on the payload).
type otherBuild struct {
	train.Model
	rel float64
}

func (o otherBuild) ReadParams(dst []float32) {
	o.Model.ReadParams(dst)
	for i := range dst {
		dst[i] *= float32(1 + o.rel*float64(i%3-1))
	}
}

// TestAuditsToleratesAnotherBuild: an auditor whose replay drifts by 1e-6
// relative from the contributors' build passes every honest contribution,
// recording a distance above 0 and within the tolerance, and still proves
// the flipper's fault; a recheck replaying on this build (distance 0)
// agrees with every verdict.
func TestAuditsToleratesAnotherBuild(t *testing.T) {
	l := sealLedgerOn(t, 2, 2, true, func(m train.Model) train.Model { return otherBuild{m, 1e-6} })
	tol := l.p.AuditTol()
	drifted, worst := 0, 0.0
	for r, out := range l.outcomes {
		for _, e := range out.Record.Entries {
			if e.Audit == nil {
				continue
			}
			a := e.Audit
			if a.PayloadDistance == nil || a.EndDistance == nil {
				t.Fatalf("round %d: %s audited without distances", r, e.Peer)
			}
			switch {
			case e.Peer == l.flipper:
				if verify.Kind(e.Reason) != verify.ReasonAudit || *a.PayloadDistance <= tol {
					t.Errorf("round %d: flipper %q at %g", r, e.Reason, *a.PayloadDistance)
				}
			case e.Verdict != record.VerdictAccepted:
				t.Errorf("round %d: honest %s %q (payload at %g, end at %g)", r, e.Peer, e.Reason, *a.PayloadDistance, *a.EndDistance)
			default:
				if *a.PayloadDistance > 0 || *a.EndDistance > 0 {
					drifted++
				}
				worst = max(worst, *a.PayloadDistance, *a.EndDistance)
				if *a.PayloadDistance > 1e-3 || *a.EndDistance > 1e-3 {
					t.Errorf("round %d: honest %s at %g / %g, want well within %g", r, e.Peer, *a.PayloadDistance, *a.EndDistance, tol)
				}
			}
		}
	}
	t.Logf("%d honest audits drifted off this build's replay, the farthest %.3g (tolerance %g)", drifted, worst, tol)
	if drifted == 0 {
		t.Fatal("the other build replayed every honest contribution exactly: the test measures nothing")
	}
	trainSet := data.Synthetic(2000, 1) // sealLedgerWith's training set
	if _, err := RecheckWith(context.Background(), l.store, RecheckOptions{AuditData: trainSet}); err != nil {
		t.Fatalf("recheck on this build of a ledger audited on another: %v", err)
	}
}

// TestStateDistanceIsPerPart: a fabricated residual small next to Adam's
// moments is still far from the replay's residual.
func TestStateDistanceIsPerPart(t *testing.T) {
	want := []float32{0.01, -0.01, 5, 5, 5, 5, 3}
	got := []float32{0.02, -0.01, 5, 5, 5, 5, 3}
	if d := StateDistance(got, want, 2, nil); d < 0.5 {
		t.Errorf("residual off by 70 %%, state distance %g", d)
	}
	if d := RelativeL2(got, want); d > 0.01 {
		t.Errorf("whole-vector distance %g: the case the per-part rule exists for", d)
	}
	if d := StateDistance(want, want, 2, nil); d != 0 {
		t.Errorf("same state at %g", d)
	}
}

// TestPayloadDistanceExcusesTopKTies: a top-k that kept another coordinate
// on a near tie is within the tolerance; the same coordinate sent with the
// wrong sign, or a kept value changed, is not.
func TestPayloadDistanceExcusesTopKTies(t *testing.T) {
	dense := []float32{5, -4, 1.0, 0.9995, 0.2, 0.1}
	replayed := []float32{5, -4, 1.0, 0, 0, 0} // top-3
	swapped := []float32{5, -4, 0, 0.9995, 0, 0}
	if d := PayloadDistance(swapped, replayed, dense, 0.01); d != 0 {
		t.Errorf("a near tie broken the other way: %g", d)
	}
	if d := RelativeL2(swapped, replayed); d < 0.1 {
		t.Errorf("plain relative L2 of the swap %g: the case the excuse exists for", d)
	}
	flipped := []float32{5, -4, 0, -0.9995, 0, 0}
	if d := PayloadDistance(flipped, replayed, dense, 0.01); d <= 0.01 {
		t.Errorf("a tied coordinate sent with the wrong sign passes at %g", d)
	}
	far := []float32{5, -4, 0, 0, 0.2, 0}
	if d := PayloadDistance(far, replayed, dense, 0.01); d <= 0.01 {
		t.Errorf("a coordinate far below the threshold swapped in passes at %g", d)
	}
}
