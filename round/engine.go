package round

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// State is the swarm between two rounds: what the last sealed record (or,
// before round 0, the manifest) pins, held in memory. Run never changes a
// State it is given; it returns the next one.
type State struct {
	Round  int64     // the round to run next
	Seed   int64     // its shard seed
	Base   cid.Cid   // its base model's CID
	Params []float32 // the base model
	Outer  []float32 // the outer optimizer's state after the previous round
	// Prev and PrevParams are the previous round's base (round 0: its
	// own): what the round's contributions are built on with overlapped
	// rounds (Params.Overlap, Built).
	Prev       cid.Cid
	PrevParams []float32
	// History maps every payload CID in the ledger to the round it first
	// appeared in (tier 1's replay check).
	History map[cid.Cid]int64
	// Scores is every peer's standing so far.
	Scores map[string]record.PeerScore
	// Chain is, per peer, where its last contribution in the ledger left
	// its private state: the next one must start there (tier 3).
	Chain map[string]Link
	// Last is what this round's peer verdicts judge (Params.PeerAudits);
	// nil when there are none to settle.
	Last *LastRound
}

// Link is the end of a peer's state chain: the end state its last
// contribution committed to and that contribution's payload (whose
// magnitude bounds the residual in the state, CheckStart).
type Link struct {
	End, Payload cid.Cid
}

// Genesis is the state round 0 starts from: the manifest's initial model,
// seed and a zero outer state.
func Genesis(m *record.SwarmManifest, initial []float32) State {
	params := slices.Clone(initial)
	return State{Seed: m.Seed, Base: m.InitialModel, Params: params, Outer: make([]float32, len(initial)), Prev: m.InitialModel, PrevParams: params,
		History: map[cid.Cid]int64{}, Scores: map[string]record.PeerScore{}, Chain: map[string]Link{}}
}

// Checks are the evidence a round's sampled checks bring: tier 2 (loss on
// data) and tier 3 (recomputation audits). Nil or Size 0 runs none.
type Checks struct {
	Tier2 Tier2
	Audit Auditor
	// Referee recomputes a previous round's contribution whose peer
	// verdict says fail (Params.PeerAudits); Size is not used as a count.
	Referee Auditor
}

// Contribution is one contribution as the round sees it, in record order
// (the order tier 0 first saw them).
type Contribution struct {
	Record  *record.Contribution
	Block   cid.Cid // the signed contribution block
	Payload []byte  // nil: could not be fetched
	// Fault and Evidence carry a tier-0 fault proven by signed blocks
	// (equivocation, oversized): it is the verdict.
	Fault, Evidence string
}

// Outcome is what a round computes.
type Outcome struct {
	// Record is the round record, but for what only the sealer knows:
	// Swarm, Prev and Sealed.
	Record record.RoundRecord
	// Next is the state the next round starts from.
	Next State
	// ModelFile and OuterFile are the checkpoint files whose CIDs the
	// record names (Model, OuterState).
	ModelFile, OuterFile []byte
	Accepted, Rejected   int
	// MeanLoss is the mean of the training losses the accepted
	// contributors report (informational: nothing depends on it).
	MeanLoss float64
	// BytesIn is the payload bytes the round received.
	BytesIn int
	// Held says why the round kept its base model instead of stepping
	// ("" when it stepped): the step would have made it non-finite.
	Held string
}

// Run computes one round from the state it starts from and the
// contributions it received: tier 1 over all of them, tier 2 over a sample
// drawn only now (t2 gives the evidence; nil or Size 0 checks none), the
// weights (Params.Weight), the aggregate of the accepted updates, the outer
// step, the checkpoint files, every contributor's score and the next
// round's shard seed. It is deterministic: the sealer and every observer
// that feeds it the same contributions and tier-2 evidence get the same
// record and model, bit for bit.
func Run(ctx context.Context, p Params, st State, in []Contribution, t2 Tier2) (Outcome, error) {
	return RunWith(ctx, p, st, in, Checks{Tier2: t2})
}

// RunWith is Run with tier-3 audits as well. With p.Audits > 0 every
// contribution must commit to its private start and end state, the start
// being where its author's last contribution ended (else: chain); after
// tier 2, audits are drawn with a seed fixed only by the round's
// contributions — updates tier 2 rejected first (tier 2 flags,
// recomputation decides: one that replays exactly stands), then updates
// flagged as colluding, then at random — and a contribution whose replay
// does not give its payload and end state is a proven fault (audit). A
// peer with a proven fault is excluded for p.ExcludeRounds rounds,
// doubling with each further fault.
func RunWith(ctx context.Context, p Params, st State, in []Contribution, checks Checks) (Outcome, error) {
	t2 := checks.Tier2
	n := len(st.Params)
	if len(st.Outer) != n {
		return Outcome{}, fmt.Errorf("round %d: outer state has %d values, the model %d", st.Round, len(st.Outer), n)
	}
	cands := make([]verify.Candidate, len(in))
	contribs := make([]cid.Cid, len(in))
	byPeer := map[string]bool{}
	for i, c := range in {
		if byPeer[c.Record.Peer] {
			return Outcome{}, fmt.Errorf("round %d: peer %s has two entries", st.Round, c.Record.Peer)
		}
		byPeer[c.Record.Peer] = true
		cands[i] = verify.Candidate{Contribution: c.Record, Payload: c.Payload, Fault: c.Fault, Evidence: c.Evidence}
		contribs[i] = c.Block
	}
	built, _ := p.Built(st)
	maxKept, err := p.maxKept(st, in, n)
	if err != nil {
		return Outcome{}, err
	}
	verdicts, err := verify.CheckRound(p.Tier1, verify.RoundContext{Round: st.Round, Base: built, Seed: st.Seed, Elems: n, History: st.History, MaxKept: maxKept}, cands)
	if err != nil {
		return Outcome{}, err
	}
	refs, peerFaults, err := settlePeerAudits(ctx, p, st, in, verdicts, checks.Referee)
	if err != nil {
		return Outcome{}, err
	}
	if err := commitments(p, st, in, verdicts); err != nil {
		return Outcome{}, err
	}
	w := p.Weight()
	// Tier 2: a sample of the updates tier 1 accepted, drawn with a seed
	// every contribution of the round fixes.
	var sampleSeed, sampleSize *int64
	evidence := map[string]record.Tier2{}
	if t2 != nil && t2.Size() > 0 {
		var standing []gradient.Update
		var peers []string
		updates := map[string][]float32{}
		for i, c := range in {
			if verdicts[i].Accepted() {
				standing = append(standing, gradient.Update{ID: c.Record.Peer, Vec: verdicts[i].Vec, Weight: w})
				peers = append(peers, c.Record.Peer)
				updates[c.Record.Peer] = verdicts[i].Vec
			}
		}
		ss, k := verify.SampleSeed(st.Seed, contribs), int64(t2.Size())
		sampleSeed, sampleSize = &ss, &k
		if sample := verify.Sample(ss, peers, int(k)); len(sample) > 0 {
			ref, err := gradient.Aggregate(p.Aggregation, standing, p.TrimFraction)
			if err != nil {
				return Outcome{}, err
			}
			got, err := t2.Check(ctx, Tier2Round{Round: st.Round, Seed: st.Seed, SampleSeed: ss, Base: st.Params, Reference: ref.Vec, Sample: sample, Updates: updates})
			if err != nil {
				return Outcome{}, err
			}
			for _, peer := range sample {
				t, ok := got[peer]
				if !ok {
					return Outcome{}, fmt.Errorf("round %d: tier 2 drew %s and has no evidence for it", st.Round, peer)
				}
				evidence[peer] = t
			}
		}
	}
	for i, c := range in {
		if t, ok := evidence[c.Record.Peer]; ok {
			verdicts[i].Reason = verify.Tier2ReasonAt(t, p.Scoring.ReferenceFraction) // keeps Norm: the record shows what was checked
		}
	}
	audits, auditSeed, auditSize, err := audit(ctx, p, st, in, verdicts, contribs, checks.Audit)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{}
	var ups []gradient.Update
	var lossSum float64
	for i, c := range in {
		out.BytesIn += len(c.Payload)
		if !verdicts[i].Accepted() {
			out.Rejected++
			continue
		}
		out.Accepted++
		lossSum += c.Record.Loss
		ups = append(ups, gradient.Update{ID: c.Record.Peer, Vec: verdicts[i].Vec, Weight: w})
	}
	if len(ups) > 0 {
		out.MeanLoss = lossSum / float64(len(ups))
	}
	params, outer, err := Apply(p, st.Params, st.Outer, ups)
	if errors.Is(err, ErrHeld) {
		out.Held = err.Error()
	} else if err != nil {
		return Outcome{}, fmt.Errorf("round %d: %w", st.Round, err)
	}
	if out.ModelFile, err = CheckpointFile(p.Model, params); err != nil {
		return Outcome{}, err
	}
	if out.OuterFile, err = VectorFile(OuterStateName, outer); err != nil {
		return Outcome{}, err
	}
	modelCID, err := storage.FileCID(out.ModelFile)
	if err != nil {
		return Outcome{}, err
	}
	outerCID, err := storage.FileCID(out.OuterFile)
	if err != nil {
		return Outcome{}, err
	}
	scores, history, chain := maps.Clone(st.Scores), maps.Clone(st.History), maps.Clone(st.Chain)
	if chain == nil {
		chain = map[string]Link{}
	}
	for _, c := range in {
		if c.Record.End != nil {
			chain[c.Record.Peer] = Link{End: *c.Record.End, Payload: c.Record.Payload}
		}
	}
	entries := make([]record.Entry, len(in))
	for i, c := range in {
		v, rec := verdicts[i], c.Record
		e := record.Entry{Peer: rec.Peer, Contribution: c.Block, Payload: rec.Payload, Verdict: record.VerdictAccepted, Reason: v.Reason, Evidence: v.Evidence,
			Weight: w, Norm: v.Norm, Loss: rec.Loss, Samples: rec.Samples, Density: p.densityOf(st.Scores[rec.Peer])}
		if !v.Accepted() {
			e.Verdict = record.VerdictRejected
		}
		if t, ok := evidence[rec.Peer]; ok {
			e.Tier2 = &t
		}
		e.EvidenceBlocks = evidenceBlocks(v.Reason, v.Evidence)
		if a, ok := audits[rec.Peer]; ok {
			e.Audit = &a
		}
		if r, ok := refs[rec.Peer]; ok {
			e.Referee = &r
		}
		ps := scores[rec.Peer]
		ps.Peer = rec.Peer
		p.Scoring.Apply(&ps, st.Round, e)
		exclude(p, &ps, st.Round, e)
		p.Thin(&ps, e)
		scores[rec.Peer] = ps
		e.Score = ps.Score
		entries[i] = e
		if _, seen := history[e.Payload]; !seen {
			history[e.Payload] = st.Round
		}
	}
	// A peer a referee proved faulty with no entry to reject this round
	// is charged all the same.
	for _, f := range peerFaults {
		ps := scores[f.peer]
		ps.Peer = f.peer
		e := record.Entry{Peer: f.peer, Verdict: record.VerdictRejected, Reason: f.reason, Evidence: f.evidence}
		p.Scoring.Apply(&ps, st.Round, e)
		exclude(p, &ps, st.Round, e)
		scores[f.peer] = ps
	}
	table := make([]record.PeerScore, 0, len(scores))
	for _, peer := range slices.Sorted(maps.Keys(scores)) {
		table = append(table, scores[peer])
	}
	nextSeed := p.SeedAfter(st, modelCID)
	out.Record = record.RoundRecord{Round: st.Round, Seed: nextSeed, Base: st.Base, Model: modelCID, OuterState: &outerCID,
		Entries: entries, Scores: table, SampleSeed: sampleSeed, SampleSize: sampleSize, AuditSeed: auditSeed, AuditSize: auditSize}
	out.Next = State{Round: st.Round + 1, Seed: nextSeed, Base: modelCID, Params: params, Outer: outer, Prev: st.Base, PrevParams: st.Params,
		History: history, Scores: scores, Chain: chain,
		Last: lastRound(p, st, in, verdicts, contribs, audits)}
	return out, nil
}

// Built is the model round st.Round's contributions must be built on (tier
// 0 and tier 1 call anything else stale) and its parameters: the round's
// base, or with overlapped rounds (p.Overlap) the previous round's base —
// exactly one round behind, never older, and never the round's own base.
// Only one base per round: every accepted update of a round then has the
// same staleness, tier 2 and the aggregate treat them alike, and a
// contributor has one rule to follow (work on what you hold while the last
// round is sealed). Either way Run applies the updates to the round's base
// (st.Params): with overlap that is one-step-delayed application, as
// streaming / overlapped DiLoCo does, and what benchmarks/sim -overlap
// measures.
func (p Params) Built(st State) (cid.Cid, []float32) {
	if p.Overlap {
		return st.Prev, st.PrevParams
	}
	return st.Base, st.Params
}

// SeedAfter is the shard seed of the round after st's, which sealed model.
// Normally it depends on the sealed model, so nobody can know their next
// shard before the seal. With overlapped rounds a contributor starts the
// next round's work while this one is sealed, so the seed depends on this
// round's base instead: known one round ahead, never more (the base is
// itself only known once the round before is sealed).
func (p Params) SeedAfter(st State, model cid.Cid) int64 {
	if p.Overlap {
		return OverlapSeed(st.Seed, st.Base)
	}
	return NextSeed(st.Seed, model)
}

// OverlapSeed is, with overlapped rounds, the shard seed of the round
// after the one with seed and base model base (SeedAfter): what a
// contributor works the next round with before the seal.
func OverlapSeed(seed int64, base cid.Cid) int64 {
	return NextSeed(seed, base)
}

// NextSeed is the shard seed of the round after one that sealed model.
func NextSeed(seed int64, model cid.Cid) int64 {
	return int64(data.PeerSeed(uint64(seed), model.String()) >> 1)
}

// ErrHeld is Apply's answer when the step would make the model or the
// outer state non-finite: it returns the base unchanged with it.
var ErrHeld = errors.New("the aggregate step made the model non-finite; the round keeps its base")

// Apply is the step from a round's base to its model: the accepted updates
// aggregated with the swarm's rule, then the outer optimizer's step from
// the previous outer state. No update leaves both unchanged, and so does a
// step that would make either non-finite (with ErrHeld): a model nobody
// can train from is never published, and every replayer decides the same.
// It returns new slices; params and outer are not changed.
func Apply(p Params, params, outer []float32, ups []gradient.Update) ([]float32, []float32, error) {
	o, err := p.NewOuter(len(params))
	if err != nil {
		return nil, nil, err
	}
	if err := o.SetState(outer); err != nil {
		return nil, nil, err
	}
	next := slices.Clone(params)
	if len(ups) == 0 {
		return next, o.State(), nil
	}
	res, err := gradient.Aggregate(p.Aggregation, ups, p.TrimFraction)
	if err != nil {
		return nil, nil, err
	}
	if err := o.Step(next, res.Vec); err != nil {
		return nil, nil, err
	}
	if st := o.State(); gradient.Finite(next) && gradient.Finite(st) {
		return next, st, nil
	}
	return slices.Clone(params), slices.Clone(outer), ErrHeld
}

// Replay is what a peer that holds a round's base state does with the
// sealed record: decode the payloads of the accepted entries (payload
// gives their bytes) with tier 1's decoder, weigh them as Run does and
// Apply them. The caller compares the resulting model's CID with the
// record's.
func Replay(p Params, params, outer []float32, entries []record.Entry, payload func(cid.Cid) ([]byte, error)) ([]float32, []float32, error) {
	var ups []gradient.Update
	for _, e := range entries {
		if e.Verdict != record.VerdictAccepted {
			continue
		}
		b, err := payload(e.Payload)
		if err != nil {
			return nil, nil, fmt.Errorf("payload %s of %s: %w", e.Payload, e.Peer, err)
		}
		vec, err := verify.DecodePayload(b, len(params))
		if err != nil {
			return nil, nil, fmt.Errorf("payload %s of %s: %w", e.Payload, e.Peer, err)
		}
		ups = append(ups, gradient.Update{ID: e.Peer, Vec: vec, Weight: p.Weight()})
	}
	next, nextOuter, err := Apply(p, params, outer, ups)
	if errors.Is(err, ErrHeld) {
		err = nil
	}
	return next, nextOuter, err
}

// evidenceBlocks links the signed blocks an equivocation's evidence names
// ("<cid> <cid>"), so the record links its proof and pinning the record
// pins it. Other evidence is text (a peer, a round, a median): nil.
func evidenceBlocks(reason, evidence string) *[]cid.Cid {
	if verify.Kind(reason) != verify.ReasonEquivocation {
		return nil
	}
	var links []cid.Cid
	for _, f := range strings.Fields(evidence) {
		c, err := cid.Decode(f)
		if err != nil {
			return nil // Recheck refuses such evidence, naming it
		}
		links = append(links, c)
	}
	return &links
}
