package verify

import (
	"math"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

const elems = 1000

// candidate builds a contribution of peer carrying v encoded with codec.
func candidate(t *testing.T, peer string, base cid.Cid, seed int64, codec gradient.Codec, v []float32) Candidate {
	t.Helper()
	b, err := gradient.Marshal(codec, v)
	if err != nil {
		t.Fatal(err)
	}
	return rawCandidate(peer, base, seed, b)
}

func rawCandidate(peer string, base cid.Cid, seed int64, payload []byte) Candidate {
	pc, _ := PayloadCID(payload)
	return Candidate{Contribution: &record.Contribution{Peer: peer, Base: base, Payload: pc, Seed: &seed}, Payload: payload}
}

// update is a deterministic sparse-ish update: nonzero where i%step == off.
func update(scale float32, step, off int) []float32 {
	v := make([]float32, elems)
	for i := off; i < elems; i += step {
		v[i] = scale * float32(1+i%7)
	}
	return v
}

func TestCheckRoundVerdicts(t *testing.T) {
	base, other := fakeCID("base"), fakeCID("other")
	topk, _ := gradient.NewCodec(gradient.TopKInt8, 0.05)
	dense, _ := gradient.NewCodec(gradient.Dense, 1)
	old := candidate(t, "old", base, 1, topk, update(1, 20, 3))
	history := map[cid.Cid]int64{old.Contribution.Payload: 4}
	honestA := candidate(t, "a", base, 1, topk, update(1, 20, 0))
	copyOfA := candidate(t, "copier", base, 1, topk, update(1, 20, 0))
	nearA := candidate(t, "near", base, 1, topk, update(1.01, 20, 0)) // same support, other values
	eqWork := candidate(t, "eq", base, 1, topk, update(1, 20, 7))
	copyOfEq := candidate(t, "copier2", base, 1, topk, update(1, 20, 7)) // copies an equivocator's payload
	nan := update(1, 20, 1)
	nanPayload, _ := gradient.Marshal(dense, nan)
	// Poison one value and fix the checksum: only the decoder's finiteness check stands.
	copy(nanPayload[gradient.HeaderSize+4*21:], []byte{0, 0, 0xc0, 0x7f})
	nanPayload = fixCRC(nanPayload)
	cases := []struct {
		c    Candidate
		want string
	}{
		{honestA, ""},
		{candidate(t, "b", base, 1, topk, update(1, 20, 5)), ""},
		{candidate(t, "c", base, 1, topk, update(1, 20, 10)), ""},
		{copyOfA, ReasonDuplicate},
		{nearA, ReasonNearDuplicate},
		{candidate(t, "big", base, 1, topk, update(1000, 20, 15)), ReasonNorm},
		{candidate(t, "zero", base, 1, topk, make([]float32, elems)), ReasonEmpty},
		{rawCandidate("nan", base, 1, nanPayload), ReasonMalformed},
		{rawCandidate("junk", base, 1, []byte("not an update")), ReasonMalformed},
		{candidate(t, "stale", other, 1, topk, update(1, 20, 2)), ReasonStale},
		{candidate(t, "shard", base, 2, topk, update(1, 20, 4)), ReasonShard},
		{old, ReasonReplay},
		{Candidate{Contribution: &record.Contribution{Peer: "gone", Base: base, Payload: fakeCID("x"), Seed: ptr(int64(1))}}, ReasonUnavailable},
		{Candidate{Contribution: honestA.Contribution, Payload: []byte("other bytes")}, ReasonPayloadCID},
		{Candidate{Contribution: &record.Contribution{Peer: "eq", Payload: eqWork.Contribution.Payload}, Fault: ReasonEquivocation + ": two", Evidence: "x y"}, ReasonEquivocation},
		{copyOfEq, ReasonDuplicate},
	}
	var cands []Candidate
	for _, c := range cases {
		cands = append(cands, c.c)
	}
	vs, err := CheckRound(DefaultTier1Params(), RoundContext{Round: 5, Base: base, Seed: 1, Elems: elems, History: history}, cands)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if got := Kind(vs[i].Reason); got != c.want {
			t.Errorf("%s: verdict %q, want kind %q", c.c.Contribution.Peer, vs[i].Reason, c.want)
		}
		if vs[i].Accepted() != (vs[i].Vec != nil) {
			t.Errorf("%s: accepted %v but vector %v", c.c.Contribution.Peer, vs[i].Accepted(), vs[i].Vec != nil)
		}
	}
	if !strings.Contains(vs[3].Reason, "same payload as a") {
		t.Errorf("duplicate names the original: %q", vs[3].Reason)
	}
	// Same input, same verdicts: the recheck depends on it.
	again, _ := CheckRound(DefaultTier1Params(), RoundContext{Round: 5, Base: base, Seed: 1, Elems: elems, History: history}, cands)
	for i := range vs {
		if again[i].Reason != vs[i].Reason || again[i].Norm != vs[i].Norm {
			t.Fatalf("entry %d: %q then %q", i, vs[i].Reason, again[i].Reason)
		}
	}
}

func TestCheckRoundOrderDecidesTheCopier(t *testing.T) {
	base := fakeCID("base")
	topk, _ := gradient.NewCodec(gradient.TopKInt8, 0.05)
	a := candidate(t, "a", base, 1, topk, update(1, 20, 0))
	b := candidate(t, "b", base, 1, topk, update(1, 20, 0))
	for _, order := range [][]Candidate{{a, b}, {b, a}} {
		vs, _ := CheckRound(DefaultTier1Params(), RoundContext{Base: base, Seed: 1, Elems: elems}, order)
		if !vs[0].Accepted() || Kind(vs[1].Reason) != ReasonDuplicate {
			t.Errorf("order %s,%s: %q, %q", order[0].Contribution.Peer, order[1].Contribution.Peer, vs[0].Reason, vs[1].Reason)
		}
	}
}

func TestSimilarity(t *testing.T) {
	a, b := update(1, 10, 0), update(1, 10, 5)
	if s := Similarity(a, a); s != 1 {
		t.Errorf("self: %v", s)
	}
	if s := Similarity(a, b); s != 0 {
		t.Errorf("disjoint supports: %v", s)
	}
	d1, d2 := make([]float32, 10), make([]float32, 10)
	for i := range d1 {
		d1[i], d2[i] = float32(i+1), -float32(i+1)
	}
	if s := Similarity(d1, d2); math.Abs(s+1) > 1e-12 {
		t.Errorf("dense opposite: %v", s)
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultTier1Params().validate(); err != nil {
		t.Error(err)
	}
	if err := DefaultScoreParams().validate(); err != nil {
		t.Error(err)
	}
	if _, err := CheckRound(Tier1Params{MaxNormRatio: 1, NearDuplicate: 0.9}, RoundContext{}, nil); err == nil {
		t.Error("MaxNormRatio 1 accepted")
	}
	if err := (ScoreParams{Decay: 0.2, Passed: 0.5, Fault: -1, Unproven: 0.7}).validate(); err == nil {
		t.Error("Unproven above Passed accepted")
	}
}

// TestScoreFormula pins the formula observers recompute.
func TestScoreFormula(t *testing.T) {
	p := DefaultScoreParams()
	good := record.Tier2{OwnBefore: 1, OwnAfter: 0.8, RandomBefore: 1, RandomAfter: 0.9, HeldBefore: 1, HeldAfter: 0.9}
	useless := record.Tier2{OwnBefore: 1, OwnAfter: 1, RandomBefore: 1, RandomAfter: 1, HeldBefore: 1, HeldAfter: 1.01}
	if Quality(good) != 1 || Quality(useless) != -1 || Tier2Reason(good) != "" || Kind(Tier2Reason(useless)) != ReasonTier2 {
		t.Fatalf("quality good %v useless %v", Quality(good), Quality(useless))
	}
	// Helps, but no better on its own shard than on random data: accepted,
	// quality -1, scored as an unchecked contribution.
	lukewarm := record.Tier2{OwnBefore: 1, OwnAfter: 0.9, RandomBefore: 1, RandomAfter: 0.8, HeldBefore: 1, HeldAfter: 1.01}
	if Quality(lukewarm) != -1 || Tier2Reason(lukewarm) != "" {
		t.Fatalf("lukewarm: quality %v, reason %q", Quality(lukewarm), Tier2Reason(lukewarm))
	}
	var ps record.PeerScore
	steps := []struct {
		e    record.Entry
		want float64
	}{
		{record.Entry{Verdict: "accepted"}, 0.2 * 0.25},
		// A passed check earns what an unchecked contribution does.
		{record.Entry{Verdict: "accepted", Tier2: &good}, 0.8*0.05 + 0.2*0.25},
		{record.Entry{Verdict: "rejected", Reason: "norm: big"}, 0.8*0.09 - 0.2},
		{record.Entry{Verdict: "rejected", Reason: "stale: old base"}, 0.8 * (0.8*0.09 - 0.2)},
		{record.Entry{Verdict: "rejected", Reason: Tier2Reason(useless), Tier2: &useless}, 0.8*(0.8*(0.8*0.09-0.2)) - 0.2},
		{record.Entry{Verdict: "accepted", Tier2: &lukewarm}, 0.8*(0.8*(0.8*(0.8*0.09-0.2))-0.2) + 0.2*0.25},
		// Tier 2 flagged it and the audit proved it: a fault, not tier 2's quality.
		{record.Entry{Verdict: "rejected", Reason: ReasonAudit + ": replay differs", Tier2: &good}, 0.8*(0.8*(0.8*(0.8*(0.8*0.09-0.2))-0.2)+0.2*0.25) - 0.2},
	}
	for i, s := range steps {
		p.Apply(&ps, int64(i), s.e)
		if math.Abs(ps.Score-s.want) > 1e-12 {
			t.Fatalf("step %d: score %v, want %v", i, ps.Score, s.want)
		}
	}
	if ps.Accepted != 3 || ps.Rejected != 4 || ps.LastRound != 6 || ProvenFaults(ps) != 2 {
		t.Fatalf("standing %+v, proven faults %d", ps, ProvenFaults(ps))
	}
	if got := *ps.Rejections; len(got) != 4 || got[0].Reason != "audit" || got[1].Reason != "norm" || got[2].Reason != "stale" || got[3].Reason != "tier2" {
		t.Fatalf("rejections %+v", got)
	}
}

func TestSampleIsFixedByTheContributions(t *testing.T) {
	peers := []string{"a", "b", "c", "d", "e"}
	cs := []cid.Cid{fakeCID("1"), fakeCID("2"), fakeCID("3")}
	s1 := SampleSeed(7, cs)
	if s2 := SampleSeed(7, []cid.Cid{cs[2], cs[0], cs[1]}); s1 != s2 {
		t.Error("sample seed depends on arrival order")
	}
	if SampleSeed(7, cs[:2]) == s1 || SampleSeed(8, cs) == s1 {
		t.Error("sample seed ignores a contribution or the round seed")
	}
	got := Sample(s1, peers, 2)
	if len(got) != 2 || got[0] >= got[1] {
		t.Fatalf("sample %v", got)
	}
	if again := Sample(s1, []string{"e", "d", "c", "b", "a"}, 2); again[0] != got[0] || again[1] != got[1] {
		t.Error("sample depends on the peers' order")
	}
	if all := Sample(s1, peers, 9); len(all) != 5 {
		t.Errorf("k over the peers: %v", all)
	}
}

func ptr[T any](v T) *T { return &v }
