package verify

import (
	"fmt"
	"math"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/record"
)

// Reason kinds: the first word of a rejection's reason. Proven kinds are
// faults anyone can re-check from the ledger's evidence (see Proven); the
// others may befall an honest peer.
const (
	ReasonEquivocation  = "equivocation"   // two different contributions for one round (tier 0)
	ReasonOversized     = "oversized"      // payload larger than any encoding of the model (tier 0)
	ReasonShard         = "shard"          // shard drawn with another seed than the round's (tier 0)
	ReasonPayloadCID    = "payload-cid"    // payload bytes do not hash to the announced CID
	ReasonMalformed     = "malformed"      // payload does not decode, or holds NaN/Inf
	ReasonEmpty         = "empty"          // an all-zero update: no work
	ReasonReplay        = "replay"         // payload already contributed in an earlier round
	ReasonDuplicate     = "duplicate"      // same payload as an earlier contribution this round
	ReasonNearDuplicate = "near-duplicate" // nearly the same update as an earlier one this round
	ReasonNorm          = "norm"           // norm far above the round's median
	ReasonDensity       = "density"        // more nonzero coordinates than the density the peer was assigned keeps
	ReasonStale         = "stale"          // built on another base model
	ReasonUnavailable   = "unavailable"    // payload could not be fetched
	ReasonChain         = "chain"          // commits to a start state that is not where its last contribution ended (tier 3)
	ReasonAudit         = "audit"          // recomputation from its committed state does not give its payload (tier 3)
	ReasonExcluded      = "excluded"       // sent while excluded for an earlier proven fault
	ReasonAccusation    = "accusation"     // signed a peer-audit verdict the coordinator's recomputation refutes (tier 3)
	ReasonTier2         = "tier2"          // sampled, and helped neither its own shard nor held-out data
)

// Proven reports whether a rejection reason is a proven fault: one that no
// honest peer commits and that `ledger --recheck` re-derives from stored
// blocks. Proven faults cost score and feed gossipsub's application score;
// stale and unavailable earn nothing; a tier-2 failure is evidence, not
// proof (an honest update can be unlucky), and scores its tier-2 quality.
func Proven(reason string) bool {
	switch Kind(reason) {
	case "", ReasonStale, ReasonUnavailable, ReasonTier2:
		return false
	}
	return true
}

// Kind is the first word of a reason ("norm: 12 over ..." → "norm").
func Kind(reason string) string {
	if i := strings.IndexAny(reason, ": "); i >= 0 {
		return reason[:i]
	}
	return reason
}

// Tier1Params are the thresholds of tier 1.
type Tier1Params struct {
	// MaxNormRatio rejects an update whose norm exceeds this multiple of
	// the round's median: far outside honest variation, and clipping alone
	// would still let it steer the direction. Must be > 1.
	MaxNormRatio float64
	// NearDuplicate rejects an update whose top-k support (its nonzero
	// coordinates) overlaps an earlier one's by at least this Jaccard
	// index; for dense updates, whose support is everything, the cosine
	// similarity is compared instead. In (0, 1]. Honest peers training on
	// different shards from one base overlap far less (measured in the
	// adversary tests; see docs/ARCHITECTURE.md).
	NearDuplicate float64
}

// DefaultTier1Params are the thresholds swarmtrain seals with; a recheck
// must use the same.
func DefaultTier1Params() Tier1Params {
	return Tier1Params{MaxNormRatio: 10, NearDuplicate: 0.9}
}

func (p Tier1Params) validate() error {
	if !(p.MaxNormRatio > 1) {
		return fmt.Errorf("MaxNormRatio must be > 1, got %v", p.MaxNormRatio)
	}
	if !(p.NearDuplicate > 0 && p.NearDuplicate <= 1) {
		return fmt.Errorf("NearDuplicate must be in (0, 1], got %v", p.NearDuplicate)
	}
	return nil
}

// RoundContext is what tier 1 checks a round's contributions against.
type RoundContext struct {
	Round int64
	Base  cid.Cid // the round's base model
	Seed  int64   // the seed shards are drawn with this round
	Elems int     // the model's parameter count
	// History maps payload CIDs contributed in earlier rounds to the round
	// they first appeared in (for replays).
	History map[cid.Cid]int64
	// MaxKept bounds each peer's nonzero coordinates: what the codec keeps
	// at the density the ledger assigns the peer (gradient.MaxKept of
	// round.Params.DensityFor). A peer it does not name is not bounded.
	MaxKept map[string]int
}

// Candidate is one contribution as tier 1 sees it, in the round record's
// order (the coordinator's arrival order).
type Candidate struct {
	Contribution *record.Contribution
	Payload      []byte // nil: could not be fetched
	// Fault is a tier-0 fault already proven (equivocation, oversized);
	// tier 1 keeps it as the verdict.
	Fault, Evidence string
}

// Verdict is tier 1's judgement of one candidate.
type Verdict struct {
	Vec      []float32 // the decoded update; nil when rejected before decoding
	Norm     float64
	Reason   string // "" when accepted
	Evidence string
}

// Accepted reports whether the verdict lets the update into the aggregate.
func (v Verdict) Accepted() bool { return v.Reason == "" }

// CheckRound runs tier 1 over one round's candidates, in order, and
// returns a verdict for each. It is deterministic: the coordinator runs it
// to seal, an observer runs it again to recheck.
//
// Each candidate must build on the round's base, name the round's shard
// seed, have a payload whose bytes hash to its CID, decode to exactly Elems
// finite values, not be all zero and keep no more coordinates than its
// peer's assigned density allows (MaxKept). Then, across the round: a payload
// contributed in an earlier round is a replay; a payload identical to an
// earlier candidate's is a duplicate; among the rest, one with a norm over
// MaxNormRatio times the median is rejected, and one whose support (or
// direction, when dense) nearly matches an earlier accepted one is a near
// duplicate. "Earlier" is record order, so the copy, which can only be made
// after the original was seen, is the one rejected.
func CheckRound(p Tier1Params, rc RoundContext, cands []Candidate) ([]Verdict, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("tier 1: %w", err)
	}
	out := make([]Verdict, len(cands))
	firstBy := map[cid.Cid]string{} // payload CID -> first peer this round
	for i, c := range cands {
		v := &out[i]
		rec := c.Contribution
		switch {
		case c.Fault != "":
			v.Reason, v.Evidence = c.Fault, c.Evidence
			if _, ok := firstBy[rec.Payload]; !ok && Kind(c.Fault) == ReasonEquivocation {
				// An equivocator's first version is real work someone did
				// (tier 0 checked its payload's CID): a later copy of it is
				// no one else's work either.
				firstBy[rec.Payload] = rec.Peer
			}
			continue
		case !rec.Base.Equals(rc.Base):
			v.Reason = fmt.Sprintf("%s: built on %s, the round's base is %s", ReasonStale, rec.Base, rc.Base)
			continue
		case ShardReason(rec.Seed, rc.Seed) != "":
			v.Reason = ShardReason(rec.Seed, rc.Seed)
			continue
		case c.Payload == nil:
			v.Reason = ReasonUnavailable + ": payload " + rec.Payload.String() + " could not be fetched"
			continue
		}
		if pc, err := PayloadCID(c.Payload); err != nil || !pc.Equals(rec.Payload) {
			v.Reason = fmt.Sprintf("%s: payload bytes hash to %s, not %s", ReasonPayloadCID, pc, rec.Payload)
			continue
		}
		vec, err := DecodePayload(c.Payload, rc.Elems)
		if err != nil {
			v.Reason = ReasonMalformed + ": " + err.Error()
			continue
		}
		norm := gradient.Norm(vec)
		if norm == 0 {
			v.Reason = ReasonEmpty + ": the update is all zeros"
			continue
		}
		if k, ok := rc.MaxKept[rec.Peer]; ok {
			if nz := nonzero(vec); nz > k {
				v.Reason = fmt.Sprintf("%s: %d nonzero coordinates, the density assigned to the peer keeps at most %d", ReasonDensity, nz, k)
				continue
			}
		}
		if r, ok := rc.History[rec.Payload]; ok {
			v.Reason = fmt.Sprintf("%s: payload %s was contributed in round %d", ReasonReplay, rec.Payload, r)
			v.Evidence = fmt.Sprintf("round %d", r)
			continue
		}
		if first, ok := firstBy[rec.Payload]; ok {
			v.Reason = fmt.Sprintf("%s: same payload as %s", ReasonDuplicate, first)
			v.Evidence = first
			continue
		}
		firstBy[rec.Payload] = rec.Peer
		v.Vec, v.Norm = vec, norm
	}
	// Norms against the round's median, over the updates still standing.
	var norms []float64
	for _, v := range out {
		if v.Accepted() {
			norms = append(norms, v.Norm)
		}
	}
	if len(norms) > 0 {
		med := gradient.MedianOf(norms)
		for i := range out {
			if v := &out[i]; v.Accepted() && v.Norm > p.MaxNormRatio*med {
				v.Reason = fmt.Sprintf("%s: %.4g is over %gx the round's median %.4g", ReasonNorm, v.Norm, p.MaxNormRatio, med)
				v.Evidence = fmt.Sprintf("median %v", med)
			}
		}
	}
	// Near duplicates: each standing update against the earlier standing ones.
	vecs := make([][]float32, len(out))
	for i := range out {
		if out[i].Accepted() {
			vecs[i] = out[i].Vec
		}
	}
	of, sims := nearDuplicates(vecs, p.NearDuplicate)
	for i, j := range of {
		if j >= 0 {
			v := &out[i]
			v.Reason = fmt.Sprintf("%s: %.3f similar to %s's update", ReasonNearDuplicate, sims[i], cands[j].Contribution.Peer)
			v.Evidence = cands[j].Contribution.Peer
		}
	}
	for i := range out {
		if !out[i].Accepted() {
			out[i].Vec, out[i].Norm = nil, 0
		}
	}
	return out, nil
}

// DecodePayload decodes an update of exactly elems values with the limits
// tier 1 applies (MaxPayloadBytes): the one decoder every role uses on a
// payload that came from the network.
func DecodePayload(payload []byte, elems int) ([]float32, error) {
	vec := make([]float32, elems)
	if _, err := gradient.UnmarshalInto(vec, payload, gradient.Limits{Elems: elems, MaxBytes: MaxPayloadBytes(elems)}); err != nil {
		return nil, err
	}
	return vec, nil
}

// MaxPayloadBytes bounds an encoded update of n elements: the widest codec
// (top-k with fp32 values and 32-bit indices) of a full vector.
func MaxPayloadBytes(n int) int { return gradient.HeaderSize + 8*n + 16 }

// PayloadCID is the CID of an encoded update: a raw block.
func PayloadCID(b []byte) (cid.Cid, error) {
	return cid.V1Builder{Codec: cid.Raw, MhType: mh.SHA2_256}.Sum(b)
}

// Similarity measures how alike two updates are: the Jaccard index of their
// supports when both are sparse (fewer than half their coordinates nonzero,
// as top-k codecs produce), otherwise the cosine of the angle between them.
// Copying the chosen coordinates is what a copier of a sparse update cannot
// avoid, however it perturbs the values.
func Similarity(a, b []float32) float64 {
	na, nb := nonzero(a), nonzero(b)
	if 2*na < len(a) && 2*nb < len(b) {
		if na+nb == 0 {
			return 1
		}
		both := 0
		for i, x := range a {
			if x != 0 && b[i] != 0 {
				both++
			}
		}
		return float64(both) / float64(na+nb-both)
	}
	var dot, aa, bb float64
	for i, x := range a {
		dot += float64(x) * float64(b[i])
		aa += float64(x) * float64(x)
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return dot / math.Sqrt(aa*bb)
}

func nonzero(v []float32) int {
	n := 0
	for _, x := range v {
		if x != 0 {
			n++
		}
	}
	return n
}

// ShardReason is the rejection of a contribution whose shard was drawn
// with seed when the round's is want (tier 0 and tier 1 give the same
// words); "" when they match.
func ShardReason(seed *int64, want int64) string {
	switch {
	case seed == nil:
		return fmt.Sprintf("%s: the contribution names no shard seed, the round's is %d", ReasonShard, want)
	case *seed != want:
		return fmt.Sprintf("%s: shard seed %d, the round's is %d", ReasonShard, *seed, want)
	}
	return ""
}
