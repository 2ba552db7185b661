package round

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// peerAudited is a ledger sealed with peer audits: the roles of its
// peers (honest, flipper, liar) and each round's verdicts by author.
type peerAudited struct {
	*ledger
	role     map[string]string
	verdicts []map[string]*record.PeerVerdict
	train    *data.Set
}

// sealPeerAudited runs rounds rounds of 4 honest peers, a flipper (honest
// work, the update sent negated) and a liar (honest work, every verdict
// it signs says fail) with peer audits on and no coordinator audit drawn
// (the flipper's cheat lands in round 0, as it may when the draw misses
// it): each peer recomputes the contribution PeerAudit assigns it from
// the last round, on its own copy of the training set, and signs the
// verdict into its contribution; the coordinator referees with a
// DataAuditor.
func sealPeerAudited(t *testing.T, rounds int) *peerAudited {
	t.Helper()
	ctx := context.Background()
	sc := testSwarm()
	sc.Verify.Audits, sc.Verify.ExcludeRounds, sc.Verify.PeerAudits, sc.Verify.Tier2Sample = 1, 2, true, 0
	p := ParamsOf(sc)
	trainSet := data.Synthetic(2000, 1)
	newModel := func() train.Model {
		m, err := train.New(p.Model, sc.Train.BatchSize, sc.Seed)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	scratch := newModel()
	g := newGenesis(t, sc, train.Snapshot(scratch))
	store, put, putFile, m, ck, swarm := g.store, g.put, g.putFile, g.manifest, g.coordKey, g.swarm
	payloadOf := func(ctx context.Context, c cid.Cid) ([]byte, error) {
		b, err := store.Get(ctx, c)
		if err != nil {
			return nil, err
		}
		return b.RawData(), nil
	}
	// Every role audits with its own scratch model: the peers' share one
	// (they take turns), the coordinator's referee has another.
	peerAuditor := &DataAuditor{P: p, Model: newModel(), Train: trainSet, File: store.ReadFile, Payload: payloadOf, Audits: 1}
	referee := &DataAuditor{P: p, Model: newModel(), Train: trainSet, File: store.ReadFile, Payload: payloadOf, Audits: 1}
	out := &peerAudited{ledger: &ledger{store: store, p: p, manifest: m, coordKey: ck}, role: map[string]string{}, train: trainSet}
	type peerState struct {
		key  crypto.PrivKey
		id   string
		role string
		w    *Worker
	}
	var peers []peerState
	for _, role := range []string{"honest", "honest", "honest", "honest", "flipper", "liar"} {
		k, id := key(t)
		w, err := NewWorker(p, newModel())
		if err != nil {
			t.Fatal(err)
		}
		peers = append(peers, peerState{k, id.String(), role, w})
		out.role[id.String()] = role
		if role == "flipper" {
			out.flipper = id.String()
		}
	}
	st := Genesis(m, train.Snapshot(scratch))
	var prev *cid.Cid
	for r := 0; r < rounds; r++ {
		var in []Contribution
		verdicts := map[string]*record.PeerVerdict{}
		for _, ps := range peers {
			v, err := PeerAudit(ctx, peerAuditor, st.Last, ps.id)
			if err != nil {
				t.Fatal(err)
			}
			if v != nil && ps.role == "liar" {
				v.Pass = false
			}
			verdicts[ps.id] = v
			start := ps.w.State()
			payload, _, _, err := ps.w.Work(ctx, st.Params, Shard(trainSet, st.Seed, ps.id, sc.Train.ShardSize), uint64(st.Seed))
			if err != nil {
				t.Fatal(err)
			}
			if ps.role == "flipper" {
				vec, err := verify.DecodePayload(payload, len(st.Params))
				if err != nil {
					t.Fatal(err)
				}
				for j := range vec {
					vec[j] = -vec[j]
				}
				if payload, err = gradient.Marshal(ps.w.Codec(), vec); err != nil {
					t.Fatal(err)
				}
			}
			seed := st.Seed
			c := &record.Contribution{Swarm: swarm, Round: st.Round, Peer: ps.id, Base: st.Base, Codec: p.Codec, Created: 1, Seed: &seed, PeerAudit: v}
			for _, s := range []struct {
				v  []float32
				to **cid.Cid
			}{{start, &c.Start}, {ps.w.State(), &c.End}} {
				f, err := StateFile(s.v)
				if err != nil {
					t.Fatal(err)
				}
				fc := putFile(f)
				*s.to = &fc
			}
			pc, _ := verify.PayloadCID(payload)
			c.Payload, c.Inline, c.PayloadBytes = pc, &payload, int64(len(payload))
			b, err := record.Sign(ps.key, c)
			if err != nil {
				t.Fatal(err)
			}
			put(b)
			pb, _ := blocks.NewBlockWithCid(payload, pc)
			put(pb)
			in = append(in, Contribution{Record: c, Block: b.Cid(), Payload: payload})
		}
		o, err := RunWith(ctx, p, st, in, Checks{Referee: referee})
		if err != nil {
			t.Fatal(err)
		}
		putFile(o.ModelFile)
		putFile(o.OuterFile)
		rec := o.Record
		rec.Swarm, rec.Prev, rec.Sealed = swarm, prev, time.Now().UnixMilli()
		rb, err := record.Sign(ck, &rec)
		if err != nil {
			t.Fatal(err)
		}
		put(rb)
		if err := store.SetHead(ctx, "ledger", rb.Cid()); err != nil {
			t.Fatal(err)
		}
		c := rb.Cid()
		prev = &c
		out.records = append(out.records, c)
		out.outcomes = append(out.outcomes, o)
		out.verdicts = append(out.verdicts, verdicts)
		st = o.Next
	}
	return out
}

// TestPeerAuditsCatchACheatAndAFalseAccuser: honest peers auditing each
// other all pass and are never rejected; the flipper's round-0 cheat,
// which no coordinator audit drew, is caught in round 1 by the peer
// assigned to it and refereed by recomputation; the liar's false "fail"
// is refereed and charged to the liar; the ledger rechecks, taking the
// referees as recorded and replaying them on the training set.
func TestPeerAuditsCatchACheatAndAFalseAccuser(t *testing.T) {
	l := sealPeerAudited(t, 2)
	r0, r1 := l.outcomes[0].Record, l.outcomes[1].Record
	for _, e := range r0.Entries {
		if e.Verdict != record.VerdictAccepted {
			t.Errorf("round 0: %s %s rejected (%s): nothing audits round 0", l.role[e.Peer], e.Peer, e.Reason)
		}
	}
	assigned := l.outcomes[0].Next.Last.Assigned
	if len(assigned) != 6 {
		t.Fatalf("round 1 assigns %d audits, want one per contributor of round 0", len(assigned))
	}
	for a, b := range assigned {
		if a == b {
			t.Errorf("%s audits itself", a)
		}
	}
	var liar string
	for p, role := range l.role {
		if role == "liar" {
			liar = p
		}
	}
	for _, e := range r1.Entries {
		v := l.verdicts[1][e.Peer]
		if v == nil || v.Peer != assigned[e.Peer] {
			t.Fatalf("%s's verdict %+v, assigned %s", e.Peer, v, assigned[e.Peer])
		}
		role, target := l.role[e.Peer], l.role[v.Peer]
		if role != "liar" && v.Pass != (target != "flipper") {
			t.Errorf("%s's verdict on the %s: pass %v (payload at %s, end at %s, fault %q)", role, target, v.Pass, distance(v.PayloadDistance), distance(v.EndDistance), v.Fault)
		}
		switch {
		case role == "honest" && e.Verdict != record.VerdictAccepted:
			t.Errorf("round 1: honest %s rejected: %s", e.Peer, e.Reason)
		case role == "flipper" && (verify.Kind(e.Reason) != verify.ReasonAudit || !strings.Contains(e.Reason, "refereed")):
			t.Errorf("round 1: the flipper %s %q, want rejected as audit by a refereed peer audit", e.Verdict, e.Reason)
		case role == "liar" && target != "flipper" && verify.Kind(e.Reason) != verify.ReasonAccusation:
			t.Errorf("round 1: the liar accused an honest peer and is %s %q, want rejected as accusation", e.Verdict, e.Reason)
		}
		if refereed := !v.Pass; refereed != (e.Referee != nil) {
			t.Errorf("round 1: %s's fail verdict refereed: %v", role, e.Referee != nil)
		}
	}
	if s := l.outcomes[1].Next.Scores[liar]; l.role[assigned[liar]] != "flipper" && verify.ProvenFaults(s) != 1 {
		t.Errorf("the liar has %d proven faults, want 1", verify.ProvenFaults(s))
	}
	ctx := context.Background()
	if _, err := Recheck(ctx, l.store); err != nil {
		t.Fatalf("recheck with the referees as recorded: %v", err)
	}
	if _, err := RecheckWith(ctx, l.store, RecheckOptions{AuditData: l.train}); err != nil {
		t.Fatalf("recheck replaying the referees: %v", err)
	}
}

// TestRecheckNamesARefereeItCannotReproduce: a record re-signed with the
// referee of the flipper's audit turned into a pass fails the recheck,
// naming the round, taken as recorded (the verdicts no longer follow from
// it) and replayed (the recomputation disagrees).
func TestRecheckNamesARefereeItCannotReproduce(t *testing.T) {
	l := sealPeerAudited(t, 2)
	edited := false
	l.resignHead(t, l.records[1], func(r *record.RoundRecord) {
		for i, e := range r.Entries {
			if e.Referee != nil && e.Referee.Peer == l.flipper {
				zero := 0.0
				r.Entries[i].Referee.Audit.PayloadDistance = &zero
				edited = true
			}
		}
	})
	if !edited {
		t.Fatal("no referee of the flipper's audit to edit")
	}
	ctx := context.Background()
	for _, opt := range []RecheckOptions{{}, {AuditData: l.train}} {
		_, err := RecheckWith(ctx, l.store, opt)
		if err == nil || !strings.Contains(err.Error(), "(round 1)") {
			t.Errorf("recheck (replaying: %v) of a faked referee: %v; want an error naming round 1", opt.AuditData != nil, err)
		}
	}
}

// TestPeerAuditAssignmentIsADerangement: every peer audits exactly one
// other and is audited by exactly one; the assignment depends on the seed.
func TestPeerAuditAssignmentIsADerangement(t *testing.T) {
	peers := []string{"a", "b", "c", "d", "e", "f", "g"}
	differs := false
	first := PeerAuditAssignment(1, peers)
	for seed := int64(1); seed < 20; seed++ {
		got := PeerAuditAssignment(seed, peers)
		audited := map[string]bool{}
		for a, b := range got {
			if a == b || audited[b] {
				t.Fatalf("seed %d: %v", seed, got)
			}
			audited[b] = true
		}
		if len(got) != len(peers) {
			t.Fatalf("seed %d: %d auditors", seed, len(got))
		}
		for p, b := range got {
			differs = differs || first[p] != b
		}
	}
	if !differs {
		t.Error("the assignment does not depend on the seed")
	}
	if PeerAuditAssignment(3, []string{"a"}) != nil {
		t.Error("a lone peer audits someone")
	}
}

// TestLastOfRebuildsWhatRunWithLeft: a sealer resuming from its ledger
// rebuilds the peer-audit state RunWith left after the last round.
func TestLastOfRebuildsWhatRunWithLeft(t *testing.T) {
	l := sealPeerAudited(t, 2)
	ctx := context.Background()
	want := l.outcomes[1].Next.Last
	rec := l.outcomes[1].Record
	before := map[string]Link{}
	for _, e := range l.outcomes[0].Record.Entries {
		before[e.Peer] = l.outcomes[0].Next.Chain[e.Peer]
	}
	got, err := LastOf(l.p, &rec, l.outcomes[0].Record.Seed, l.outcomes[0].Next.Params, before,
		func(c cid.Cid) (*record.Contribution, error) {
			b, err := l.store.Get(ctx, c)
			if err != nil {
				return nil, err
			}
			r, _, err := record.OpenBlock[record.Contribution](b)
			return r, err
		},
		func(c cid.Cid) ([]byte, error) {
			b, err := l.store.Get(ctx, c)
			if err != nil {
				return nil, err
			}
			return b.RawData(), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if got.Round != want.Round || got.Seed != want.Seed || !slices.Equal(got.Base, want.Base) || !maps.Equal(got.Assigned, want.Assigned) || len(got.Work) != len(want.Work) {
		t.Fatalf("rebuilt round %d seed %d assigned %v (%d works), want round %d seed %d assigned %v (%d works)",
			got.Round, got.Seed, got.Assigned, len(got.Work), want.Round, want.Seed, want.Assigned, len(want.Work))
	}
	for p, w := range want.Work {
		g := got.Work[p]
		if !g.Contribution.Equals(w.Contribution) || !g.Start.Equals(w.Start) || !g.End.Equals(w.End) || !g.Prev.Equals(w.Prev) || !slices.Equal(g.Vec, w.Vec) || (g.Audit == nil) != (w.Audit == nil) {
			t.Errorf("%s: rebuilt %+v, want %+v", p, g, w)
		}
	}
}
