package round

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

func thinParams(min float64) Params {
	sc := testSwarm()
	sc.Compression.Density = 0.1
	sc.Compression.MinDensity = min
	return ParamsOf(sc)
}

// TestThinHalvesAndRecovers walks one peer's thinning through a run of
// verdicts: each unavailable round halves its density down to the floor,
// RecoverRounds accepted ones double it back, other rejections and a swarm
// without a floor leave it alone.
func TestThinHalvesAndRecovers(t *testing.T) {
	p := thinParams(0.02)
	unavailable := record.Entry{Verdict: record.VerdictRejected, Reason: verify.ReasonUnavailable + ": payload x could not be fetched"}
	accepted := record.Entry{Verdict: record.VerdictAccepted}
	stale := record.Entry{Verdict: record.VerdictRejected, Reason: verify.ReasonStale + ": built on x"}
	var ps record.PeerScore
	steps := []struct {
		e    record.Entry
		want float64
	}{
		{accepted, 0.1}, {unavailable, 0.05}, {unavailable, 0.025}, {unavailable, 0.02}, {unavailable, 0.02},
		{stale, 0.02}, {accepted, 0.02}, {accepted, 0.02}, {accepted, 0.025}, {unavailable, 0.02},
		{accepted, 0.02}, {accepted, 0.02}, {accepted, 0.025}, {accepted, 0.025}, {accepted, 0.025}, {accepted, 0.05},
		{accepted, 0.05}, {accepted, 0.05}, {accepted, 0.1}, {accepted, 0.1},
	}
	for i, s := range steps {
		p.Thin(&ps, s.e)
		if got := p.DensityFor(ps); got != s.want {
			t.Fatalf("step %d (%s %q): density %v, want %v (thinning %+v)", i, s.e.Verdict, verify.Kind(s.e.Reason), got, s.want, ps.Thinning)
		}
	}
	if ps.Thinning != nil {
		t.Errorf("back at the swarm's density with thinning %+v, want nil (the record leaves it out)", *ps.Thinning)
	}
	for name, off := range map[string]Params{"min_density 0": thinParams(0), "min_density = density": thinParams(0.1)} {
		var ps record.PeerScore
		off.Thin(&ps, unavailable)
		if ps.Thinning != nil || off.DensityFor(ps) != 0.1 {
			t.Errorf("%s: an unavailable round thinned to %v (%+v)", name, off.DensityFor(ps), ps.Thinning)
		}
	}
	dense := thinParams(0.02)
	dense.Codec = gradient.Int8
	var dps record.PeerScore
	if dense.Thin(&dps, unavailable); dps.Thinning != nil {
		t.Errorf("a dense codec thinned: %+v", *dps.Thinning)
	}
}

// TestTier1HoldsPeersToTheirDensity runs a round in which one peer's
// standing assigns it half the swarm's density: its payload at the swarm's
// density is rejected as density (a proven fault), at its own it is
// accepted and the entry names the density; a peer at the swarm's density
// is unaffected either way.
func TestTier1HoldsPeersToTheirDensity(t *testing.T) {
	p := thinParams(0.02)
	model, err := train.New(p.Model, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()
	n := model.NumParams()
	c0, _ := verify.PayloadCID([]byte("initial"))
	st := Genesis(&record.SwarmManifest{InitialModel: c0, Seed: 7}, train.Snapshot(model))
	_, slow := key(t)
	_, fast := key(t)
	st.Scores[slow.String()] = record.PeerScore{Peer: slow.String(), Thinning: &record.Thinning{Halvings: 1}}
	rng := rand.New(rand.NewPCG(3, 4))
	contribution := func(peer string, density float64) Contribution {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64()) * 1e-3
		}
		codec, err := gradient.NewCodec(p.Codec, density)
		if err != nil {
			t.Fatal(err)
		}
		payload, err := gradient.Marshal(codec, v)
		if err != nil {
			t.Fatal(err)
		}
		pc, _ := verify.PayloadCID(payload)
		seed := st.Seed
		return Contribution{Record: &record.Contribution{Peer: peer, Base: st.Base, Payload: pc, Seed: &seed}, Block: cid.Undef, Payload: payload}
	}
	for _, tc := range []struct {
		density float64
		reason  string
	}{{0.1, verify.ReasonDensity}, {0.05, ""}, {0.03, ""}} {
		in := []Contribution{contribution(fast.String(), 0.1), contribution(slow.String(), tc.density)}
		out, err := Run(context.Background(), p, st, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		f, s := out.Record.Entries[0], out.Record.Entries[1]
		if f.Verdict != record.VerdictAccepted || f.Density != nil {
			t.Errorf("slow peer at %v: the fast peer's entry %s %q, density %v", tc.density, f.Verdict, f.Reason, f.Density)
		}
		if verify.Kind(s.Reason) != tc.reason || s.Density == nil || *s.Density != 0.05 {
			t.Errorf("slow peer at %v: %s %q, density %v; want reason %q at density 0.05", tc.density, s.Verdict, s.Reason, s.Density, tc.reason)
		}
		if tc.reason != "" && !verify.Proven(s.Reason) {
			t.Errorf("%q is not a proven fault", s.Reason)
		}
		if tc.reason == "" && s.Verdict != record.VerdictAccepted {
			t.Errorf("slow peer at %v rejected: %s", tc.density, s.Reason)
		}
		// Accepted at its density: one round of RecoverRounds towards
		// doubling it again.
		if th := out.Next.Scores[slow.String()].Thinning; tc.reason == "" && (th == nil || th.Halvings != 1 || th.Accepted != 1) {
			t.Errorf("slow peer's thinning after an accepted round: %+v", th)
		}
	}
}

// TestAuditReplaysAtAssignedDensity: tier 3 replays a thinned peer's work
// at the density the ledger assigns it, so its honest sparser payload
// stands; replayed at the swarm's density it would not match.
func TestAuditReplaysAtAssignedDensity(t *testing.T) {
	p := thinParams(0.02)
	trainSet := data.Synthetic(1000, 1)
	newModel := func() train.Model {
		m, err := train.New(p.Model, p.BatchSize, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	w, err := NewWorker(p, newModel())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetDensity(0.05); err != nil {
		t.Fatal(err)
	}
	_, id := key(t)
	peer := id.String()
	const seed = 11
	base := train.Snapshot(newModel())
	startFile, err := StateFile(w.State())
	if err != nil {
		t.Fatal(err)
	}
	startCID, _ := storage.FileCID(startFile)
	payload, _, _, err := w.Work(context.Background(), base, Shard(trainSet, seed, peer, p.ShardSize), seed)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := verify.DecodePayload(payload, len(base))
	if err != nil {
		t.Fatal(err)
	}
	endFile, err := StateFile(w.State())
	if err != nil {
		t.Fatal(err)
	}
	endCID, _ := storage.FileCID(endFile)
	files := map[cid.Cid][]byte{startCID: startFile, endCID: endFile}
	a := &DataAuditor{P: p, Model: newModel(), Train: trainSet, Audits: 1,
		File: func(_ context.Context, c cid.Cid) ([]byte, error) { return files[c], nil }}
	for _, tc := range []struct {
		density map[string]float64
		match   bool
	}{{map[string]float64{peer: 0.05}, true}, {nil, false}} {
		got, err := a.Audit(context.Background(), AuditRound{Round: 1, Seed: seed, Base: base, Drawn: []string{peer},
			Start: map[string]cid.Cid{peer: startCID}, Prev: map[string]cid.Cid{}, Density: tc.density,
			Sent: map[string][]float32{peer: sent}, End: map[string]cid.Cid{peer: endCID}})
		if err != nil {
			t.Fatal(err)
		}
		r := got[peer]
		if r.Fault != "" || r.PayloadDistance == nil || (*r.PayloadDistance <= p.AuditTol()) != tc.match {
			t.Errorf("replayed with densities %v: payload distance %v, fault %q; want within %g: %v", tc.density, r.PayloadDistance, r.Fault, p.AuditTol(), tc.match)
		}
	}
}
