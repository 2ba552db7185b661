package round

import (
	"fmt"
	"math"
	"strings"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/verify"
)

// RecoverRounds is how many accepted rounds in a row a thinned peer sends
// at its lowered density before the density doubles again. One would have
// a peer whose link carries only half the payload alternate between a lost
// and an accepted round; three loses one round in four at most while its
// link stays slow, and a peer whose link recovered is back at the swarm's
// density within three rounds per halving.
const RecoverRounds = 3

// maxHalvings bounds Thinning.Halvings whatever the densities: 2^-60 of
// any density is below every MinDensity a config can hold in practice.
const maxHalvings = 60

// thins reports whether the swarm lowers slow peers' densities at all: a
// top-k codec and a MinDensity below its Density.
func (p Params) thins() bool {
	return strings.HasPrefix(p.Codec, gradient.TopK) && p.MinDensity > 0 && p.MinDensity < p.Density
}

// halvingsToFloor is how many halvings take Density to MinDensity: the
// last one may land below it, and DensityFor clamps.
func (p Params) halvingsToFloor() int64 {
	var h int64
	for d := p.Density; d > p.MinDensity && h < maxHalvings; d /= 2 {
		h++
	}
	return h
}

// DensityFor is the top-k density a peer with standing ps (its row of the
// last sealed record's score table; the zero value for a newcomer) must
// encode its next contribution at: the swarm's Density halved once per
// Thinning halving, never below MinDensity. It is a pure function of the
// ledger, so the contributor encoding, tier 1 bounding the payload's
// support, a tier-3 replay and `ledger --recheck` all derive the same.
func (p Params) DensityFor(ps record.PeerScore) float64 {
	if !p.thins() || ps.Thinning == nil || ps.Thinning.Halvings <= 0 {
		return p.Density
	}
	h := min(ps.Thinning.Halvings, maxHalvings)
	return max(p.MinDensity, p.Density*math.Ldexp(1, -int(h)))
}

// ScoreOf is peer's row of a record's score table; the zero value (the
// swarm's density) when it has none.
func ScoreOf(scores []record.PeerScore, peer string) record.PeerScore {
	for _, s := range scores {
		if s.Peer == peer {
			return s
		}
	}
	return record.PeerScore{Peer: peer}
}

// Thin folds one round's entry into its author's thinning: a payload that
// could not be fetched in time (unavailable) halves the peer's density
// once more, down to MinDensity; RecoverRounds accepted rounds in a row at
// a lowered density double it again. Other verdicts leave it alone: they
// say nothing about the peer's link. Everything it reads is in the record,
// so a recheck re-derives it.
func (p Params) Thin(ps *record.PeerScore, e record.Entry) {
	if !p.thins() {
		return
	}
	var t record.Thinning
	if ps.Thinning != nil {
		t = *ps.Thinning
	}
	switch {
	case e.Verdict != record.VerdictAccepted && verify.Kind(e.Reason) == verify.ReasonUnavailable:
		t.Halvings, t.Accepted = min(t.Halvings+1, p.halvingsToFloor()), 0
	case e.Verdict == record.VerdictAccepted && t.Halvings > 0:
		if t.Accepted++; t.Accepted >= RecoverRounds {
			t.Halvings, t.Accepted = t.Halvings-1, 0
		}
	}
	if t.Halvings <= 0 {
		ps.Thinning = nil
		return
	}
	ps.Thinning = &t
}

// densityOf is the density a contribution is held to in the record: nil
// when it is the swarm's.
func (p Params) densityOf(ps record.PeerScore) *float64 {
	if d := p.DensityFor(ps); d != p.Density {
		return &d
	}
	return nil
}

// maxKept is tier 1's bound on each contributor's support this round: what
// the codec keeps at the density its standing assigns it.
func (p Params) maxKept(st State, in []Contribution, n int) (map[string]int, error) {
	out := make(map[string]int, len(in))
	for _, c := range in {
		k, err := gradient.MaxKept(p.Codec, p.DensityFor(st.Scores[c.Record.Peer]), n)
		if err != nil {
			return nil, fmt.Errorf("compression: %w", err)
		}
		out[c.Record.Peer] = k
	}
	return out, nil
}
