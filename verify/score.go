package verify

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/swarmtrain/swarmtrain/storage/record"
)

// ScoreParams define the score: a moving value per peer, updated with each
// round the peer has an entry in,
//
//	score ← (1 − Decay)·score + Decay·x
//
// where x is the entry's value:
//
//	x = Fault              a proven fault (see Proven): tier 0 or 1, a failed audit, excluded
//	x = Quality(tier2)     sampled by tier 2 and rejected by it (Tier2Reason), no audit overturning it: -1 or 0
//	x = Unproven           another rejection an honest peer can suffer (stale, unavailable)
//	x = Passed             accepted, checked or not
//
// An accepted contribution scores the same whether tier 2 sampled it, an
// audit replayed it or nothing checked it: which peers are checked is luck
// of the draw, and a bonus for passing made honest scores spread 0.26-0.69
// after 20 rounds by that luck alone (benchmarks/attacks). Checks matter
// through what they reject: a cheat is caught, not an honest peer
// rewarded. Nor does being sampled cost an accepted contribution: a sparse
// honest update late in training often moves the held-out loss by less
// than nothing, or its own shard's no more than a random one's.
//
// A peer starts at 0. Rounds without an entry leave the score alone, so a
// slow or absent honest peer is never pushed down. Everything x depends on
// is in the round record (verdict, reason, tier-2 losses), so an observer
// recomputes every score from the ledger (`swarmtrain ledger --recheck`).
type ScoreParams struct {
	// Decay is the weight of the newest round. In (0, 1].
	Decay float64
	// Passed is what an accepted contribution earns. In [0, 1): above 0,
	// so that a peer whose work counts stands above one whose work is
	// refused, and the same for checked and unchecked work (see above).
	Passed float64
	// Fault is what a proven fault costs. In [-1, 0).
	Fault float64
	// Unproven is what a rejection that may be honest bad luck earns. In
	// [Fault, Passed].
	Unproven float64
	// ReferenceFraction is tier 2's bar (HelpsAt); 0 means the default
	// ReferenceFraction. A swarm sets it in verify.reference_fraction.
	ReferenceFraction float64
}

// DefaultScoreParams are the parameters every swarmtrain node scores with;
// a recheck uses the same. Decay 0.2 weighs the last ten rounds at about
// 90 %; a proven fault costs as much as a perfect tier-2 check earns.
func DefaultScoreParams() ScoreParams {
	return ScoreParams{Decay: 0.2, Passed: 0.25, Fault: -1, Unproven: 0}
}

func (p ScoreParams) validate() error {
	switch {
	case !(p.Decay > 0 && p.Decay <= 1):
		return fmt.Errorf("Decay must be in (0, 1], got %v", p.Decay)
	case !(p.Passed >= 0 && p.Passed < 1):
		return fmt.Errorf("Passed must be in [0, 1), got %v", p.Passed)
	case !(p.Fault >= -1 && p.Fault < 0):
		return fmt.Errorf("Fault must be in [-1, 0), got %v", p.Fault)
	case !(p.Unproven >= p.Fault && p.Unproven <= p.Passed):
		return fmt.Errorf("Unproven must be in [Fault, Passed], got %v", p.Unproven)
	}
	return nil
}

// Value is x for one entry (see ScoreParams).
func (p ScoreParams) Value(e record.Entry) float64 {
	switch {
	case e.Verdict == record.VerdictAccepted:
		return p.Passed
	case Proven(e.Reason):
		return p.Fault // before tier 2's evidence: an audit may have proven what tier 2 flagged
	case e.Tier2 != nil:
		return QualityAt(*e.Tier2, p.ReferenceFraction)
	}
	return p.Unproven
}

// Apply folds one round's entry into a peer's standing: the score, the
// accepted and rejected counts, the rejections by kind and the last round.
func (p ScoreParams) Apply(ps *record.PeerScore, round int64, e record.Entry) {
	ps.Score = (1-p.Decay)*ps.Score + p.Decay*p.Value(e)
	ps.LastRound = round
	if e.Verdict == record.VerdictAccepted {
		ps.Accepted++
		return
	}
	ps.Rejected++
	var rc []record.ReasonCount
	if ps.Rejections != nil {
		rc = slices.Clone(*ps.Rejections)
	}
	k := Kind(e.Reason)
	i, found := slices.BinarySearchFunc(rc, k, func(r record.ReasonCount, k string) int { return cmp.Compare(r.Reason, k) })
	if found {
		rc[i].Count++
	} else {
		rc = slices.Insert(rc, i, record.ReasonCount{Reason: k, Count: 1})
	}
	ps.Rejections = &rc
}

// ProvenFaults counts a peer's proven faults: what gossipsub's
// application-specific score charges it for.
func ProvenFaults(ps record.PeerScore) int64 {
	if ps.Rejections == nil {
		return 0
	}
	var n int64
	for _, r := range *ps.Rejections {
		if Proven(r.Reason) {
			n += r.Count
		}
	}
	return n
}
