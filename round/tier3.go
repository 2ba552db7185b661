package round

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// commitments turns away, before any sampled check, what may not count
// this round: a peer still excluded for an earlier proven fault and, with
// audits on, a contribution whose committed start state is neither where
// its author's last contribution ended (the state chain) nor the zero
// state, or that commits to none.
func commitments(p Params, st State, in []Contribution, verdicts []verify.Verdict) error {
	var zero cid.Cid
	for i, c := range in {
		if !verdicts[i].Accepted() {
			continue
		}
		rec := c.Record
		if ps, ok := st.Scores[rec.Peer]; ok && ps.ExcludedUntil != nil && st.Round < *ps.ExcludedUntil {
			verdicts[i].Reason = fmt.Sprintf("%s: until round %d for its proven faults", verify.ReasonExcluded, *ps.ExcludedUntil)
			continue
		}
		if p.Audits <= 0 {
			continue
		}
		if rec.Start == nil || rec.End == nil {
			verdicts[i].Reason = verify.ReasonChain + ": commits to no start or end state, and this swarm audits"
			continue
		}
		if !zero.Defined() {
			var err error
			if zero, err = ZeroStateCID(p, len(st.Params)); err != nil {
				return err
			}
		}
		want := st.Chain[rec.Peer].End
		if !want.Defined() {
			want = zero
		}
		// The zero state is always a valid start: a peer that restarted
		// without its state, or lost track of the chain, starts over.
		// Replaying from it is honest work, so it launders nothing.
		if !rec.Start.Equals(want) && !rec.Start.Equals(zero) {
			verdicts[i].Reason = fmt.Sprintf("%s: starts from state %s, its last contribution ended at %s", verify.ReasonChain, *rec.Start, want)
			verdicts[i].Evidence = want.String()
		}
	}
	return nil
}

// ZeroStateCID is the state a peer's first contribution starts from.
func ZeroStateCID(p Params, n int) (cid.Cid, error) {
	k, err := p.StateLen(n)
	if err != nil {
		return cid.Undef, err
	}
	return StateCID(make([]float32, k))
}

// AuditSeed draws a round's audits. Like the tier-2 sample seed it is
// fixed only by every contribution the round received, so nobody knows
// before the round closes who will be audited.
func AuditSeed(seed int64, contribs []cid.Cid) int64 {
	return int64(data.PeerSeed(uint64(verify.SampleSeed(seed, contribs)), "audit") >> 1)
}

// CollusionCosine is the cosine of the decoded updates above which two
// contributions of a round count as near-parallel. Measured in
// benchmarks/attacks (1 % top-k, 20 rounds, 5 seeds): honest pairs at most
// 0.197; sybils sharing one direction with their own noise and support,
// and ALIE pairs, at least 0.658.
const CollusionCosine = 0.35

// Colluding lists the peers whose update is near-parallel (CollusionCosine)
// to another's among vecs, sorted: audited first. Cosine on the dense
// decoded values, not the supports, so sybils cannot hide behind disjoint
// coordinates of one direction without also splitting the direction.
func Colluding(peers []string, vecs [][]float32) []string {
	sv := make([]sparseVec, len(vecs))
	norms := make([]float64, len(vecs))
	for i, v := range vecs {
		sv[i] = sparseOf(v)
		norms[i] = math.Sqrt(sv[i].dot(sv[i]))
	}
	var out []string
	for i := range vecs {
		for j := range vecs {
			if i != j && norms[i] > 0 && norms[j] > 0 && sv[i].dot(sv[j])/(norms[i]*norms[j]) >= CollusionCosine {
				out = append(out, peers[i])
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// audit draws and applies the round's tier-3 audits: the candidates are
// the contributions tier 1 and the chain let through (tier 2's rejections
// included); tier 2's rejections first, then colluding peers and peers
// with a proven fault on their record, then a random draw fill Size slots. A drawn contribution stands when the replay
// gives its payload and end state, whatever tier 2 said, and is rejected
// (audit, a proven fault) otherwise.
func audit(ctx context.Context, p Params, st State, in []Contribution, verdicts []verify.Verdict, contribs []cid.Cid, a Auditor) (map[string]record.Audit, *int64, *int64, error) {
	if a == nil || a.Size() <= 0 || p.Audits <= 0 {
		return nil, nil, nil, nil
	}
	size := int64(a.Size())
	var suspects, rest, peers []string
	var vecs [][]float32
	index := map[string]int{}
	for i, c := range in {
		v := verdicts[i]
		if !v.Accepted() && verify.Kind(v.Reason) != verify.ReasonTier2 {
			continue
		}
		peer := c.Record.Peer
		index[peer] = i
		peers, vecs = append(peers, peer), append(vecs, v.Vec)
		if !v.Accepted() {
			suspects = append(suspects, peer)
		}
	}
	// Then near-parallel updates, then peers back from an exclusion (a
	// proven fault on their record): suspicion raises the odds.
	flagged := Colluding(peers, vecs)
	for _, peer := range peers {
		if verify.ProvenFaults(st.Scores[peer]) > 0 && !slices.Contains(flagged, peer) {
			flagged = append(flagged, peer)
		}
	}
	for _, peer := range flagged {
		if !slices.Contains(suspects, peer) {
			suspects = append(suspects, peer)
		}
	}
	for _, peer := range peers {
		if !slices.Contains(suspects, peer) {
			rest = append(rest, peer)
		}
	}
	seed := AuditSeed(st.Seed, contribs)
	k := min(a.Size(), len(peers))
	drawn := suspects[:min(len(suspects), k)]
	drawn = append(slices.Clone(drawn), verify.Sample(seed, rest, k-len(drawn))...)
	if len(drawn) == 0 {
		return nil, &seed, &size, nil
	}
	_, built := p.Built(st) // the replay starts where the work did
	r := AuditRound{Round: st.Round, Seed: st.Seed, Base: built, Drawn: drawn, Start: map[string]cid.Cid{}, Prev: map[string]cid.Cid{},
		Sent: map[string][]float32{}, End: map[string]cid.Cid{}, Density: map[string]float64{}}
	for _, peer := range drawn {
		rec := in[index[peer]].Record
		r.Start[peer], r.End[peer], r.Sent[peer] = *rec.Start, *rec.End, verdicts[index[peer]].Vec
		r.Density[peer] = p.DensityFor(st.Scores[peer])
		if l, ok := st.Chain[peer]; ok {
			r.Prev[peer] = l.Payload
		}
	}
	got, err := a.Audit(ctx, r)
	if err != nil {
		return nil, nil, nil, err
	}
	out, tol := map[string]record.Audit{}, p.AuditTol()
	for _, peer := range drawn {
		res, ok := got[peer]
		if !ok {
			return nil, nil, nil, fmt.Errorf("round %d: tier 3 drew %s and has no audit of it", st.Round, peer)
		}
		out[peer] = res
		i := index[peer]
		rec := in[i].Record
		switch {
		case res.Fault != "":
			verdicts[i].Reason = fmt.Sprintf("%s: %s", verify.ReasonAudit, res.Fault)
		case passed(res, rec.Payload, *rec.End, tol):
			verdicts[i].Reason = "" // recomputed within the tolerance: it stands, whatever tier 2 measured
			continue
		case res.PayloadDistance == nil || res.EndDistance == nil:
			verdicts[i].Reason = fmt.Sprintf("%s: replayed from its committed state %s, the work gives payload %v and end state %v, not %s and %s",
				verify.ReasonAudit, res.Start, res.Payload, res.End, rec.Payload, *rec.End)
		// The reason names no replay CID or distance (the audit record
		// holds them): a replay on another build must give the same text.
		case *res.PayloadDistance > tol:
			verdicts[i].Reason = fmt.Sprintf("%s: replayed from its committed state %s, the work's payload lies beyond the tolerance %g (relative L2) of the one sent",
				verify.ReasonAudit, res.Start, tol)
		default:
			verdicts[i].Reason = fmt.Sprintf("%s: replayed from its committed state %s, the work ends beyond the tolerance %g (relative L2) of the committed end state %s",
				verify.ReasonAudit, res.Start, tol, *rec.End)
		}
		verdicts[i].Evidence = res.Start.String()
	}
	return out, &seed, &size, nil
}

// exclude starts a peer's exclusion after a proven fault in entry e:
// p.ExcludeRounds rounds for the first, doubling with each further one
// (rejections as excluded do not count).
func exclude(p Params, ps *record.PeerScore, round int64, e record.Entry) {
	if p.ExcludeRounds <= 0 || e.Verdict == record.VerdictAccepted || !verify.Proven(e.Reason) || verify.Kind(e.Reason) == verify.ReasonExcluded {
		return
	}
	k := verify.ProvenFaults(*ps)
	if ps.Rejections != nil {
		for _, r := range *ps.Rejections {
			if r.Reason == verify.ReasonExcluded {
				k -= r.Count
			}
		}
	}
	until := round + 1 + int64(p.ExcludeRounds)<<min(max(k-1, 0), 20)
	ps.ExcludedUntil = &until
}
