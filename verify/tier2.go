package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// SampleSeed is the seed of a round's tier-2 sample: a hash of the round's
// seed and every contribution the round received. It is fixed only when the
// round closes — any contribution changes it — so no contributor knows in
// advance whether it will be checked.
func SampleSeed(roundSeed int64, contributions []cid.Cid) int64 {
	keys := make([]string, len(contributions))
	for i, c := range contributions {
		keys[i] = c.KeyString()
	}
	slices.Sort(keys)
	h := sha256.New()
	h.Write([]byte("swarmtrain/tier2/v1"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(roundSeed))
	h.Write(b[:])
	for _, k := range keys {
		h.Write([]byte(k))
	}
	return int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]) >> 1)
}

// Sample draws k of peers (all of them when k >= len(peers)) with seed,
// independent of the order peers are given in. The result is sorted.
func Sample(seed int64, peers []string, k int) []string {
	s := slices.Clone(peers)
	slices.Sort(s)
	if k >= len(s) {
		return s
	}
	perm := data.Permutation(uint64(seed), len(s))
	out := make([]string, 0, k)
	for _, i := range perm[:k] {
		out = append(out, s[i])
	}
	slices.Sort(out)
	return out
}

// Tier2EvalSamples caps each set a tier-2 check evaluates on. Every
// evaluation is a forward pass the seal waits for (about 30 µs a sample for
// a 100k-parameter MLP in pure Go), and 1,000 samples already put the loss
// changes of honest updates several times above those of noise (see
// ReferenceFraction).
const Tier2EvalSamples = 1000

// Tier2Sets draws the data a round's tier-2 checks use from the sample seed:
// a random shard of the training set and held-out samples from the test
// set, each of min(shardSize, Tier2EvalSamples) samples.
func Tier2Sets(sampleSeed int64, trainSet, heldOut *data.Set, shardSize int) (random, held *data.Set) {
	n := min(shardSize, Tier2EvalSamples)
	random = trainSet.Subset(data.Assign(uint64(sampleSeed), "tier2/random", trainSet.N, n))
	held = heldOut.Subset(data.Assign(uint64(sampleSeed), "tier2/held-out", heldOut.N, n))
	return random, held
}

// OwnShard is the part of a contributor's shard tier 2 evaluates on: the
// first min(shardSize, Tier2EvalSamples) samples of data.Assign(seed, peer),
// which the contributor trained on.
func OwnShard(trainSet *data.Set, seed int64, peer string, shardSize int) *data.Set {
	idx := data.Assign(uint64(seed), peer, trainSet.N, shardSize)
	return trainSet.Subset(idx[:min(len(idx), Tier2EvalSamples)])
}

// Tier2Checker runs tier 2 for one round: the loss of the round's base model
// before and after applying one contribution's update alone (base − update,
// the same sign the outer step uses), on the contributor's own shard, a
// random shard and held-out data. An honest update, trained on its own
// shard, lowers the loss there at least as much as on random data and
// lowers the held-out loss; noise, zeros, an update trained on other data
// or one pushing the model elsewhere does not (see Quality).
type Tier2Checker struct {
	m            train.Model
	base         []float32
	scratch      []float32 // base − update, written to the model
	random, held *data.Set
	randomBefore float64
	heldBefore   float64
	reference    float64
}

// NewTier2Checker evaluates the base model on the round's random and
// held-out sets. m's parameters are left at base after every call.
func NewTier2Checker(m train.Model, base []float32, random, held *data.Set) (*Tier2Checker, error) {
	c := &Tier2Checker{m: m, base: slices.Clone(base), scratch: make([]float32, len(base)), random: random, held: held}
	if err := m.WriteParams(c.base); err != nil {
		return nil, err
	}
	var err error
	if c.randomBefore, _, err = m.Evaluate(random); err != nil {
		return nil, fmt.Errorf("tier 2: %w", err)
	}
	if c.heldBefore, _, err = m.Evaluate(held); err != nil {
		return nil, fmt.Errorf("tier 2: %w", err)
	}
	return c, nil
}

// SetReference measures the round's aggregate update (of the contributions
// that passed tier 1) on the held-out set: every later Check records how
// much it lowered the held-out loss as the round's reference.
func (c *Tier2Checker) SetReference(aggregate []float32) error {
	if len(aggregate) != len(c.base) {
		return fmt.Errorf("tier 2: aggregate has %d elements, the model %d", len(aggregate), len(c.base))
	}
	defer c.m.WriteParams(c.base)
	if err := c.apply(aggregate); err != nil {
		return err
	}
	after, _, err := c.m.Evaluate(c.held)
	if err != nil {
		return fmt.Errorf("tier 2: %w", err)
	}
	c.reference = c.heldBefore - after
	return nil
}

// apply sets the model to base − u.
func (c *Tier2Checker) apply(u []float32) error {
	for i, v := range u {
		c.scratch[i] = c.base[i] - v
	}
	if err := c.m.WriteParams(c.scratch); err != nil {
		return fmt.Errorf("tier 2: %w", err)
	}
	return nil
}

// Check measures one update against the contributor's own shard.
func (c *Tier2Checker) Check(own *data.Set, update []float32) (record.Tier2, error) {
	t := record.Tier2{RandomBefore: c.randomBefore, HeldBefore: c.heldBefore, Reference: c.reference}
	if len(update) != len(c.base) {
		return t, fmt.Errorf("tier 2: update has %d elements, the model %d", len(update), len(c.base))
	}
	defer c.m.WriteParams(c.base)
	if err := c.m.WriteParams(c.base); err != nil {
		return t, fmt.Errorf("tier 2: %w", err)
	}
	var err error
	if t.OwnBefore, _, err = c.m.Evaluate(own); err != nil {
		return t, fmt.Errorf("tier 2: %w", err)
	}
	if err := c.apply(update); err != nil {
		return t, err
	}
	for _, e := range []struct {
		set *data.Set
		dst *float64
	}{{own, &t.OwnAfter}, {c.random, &t.RandomAfter}, {c.held, &t.HeldAfter}} {
		if *e.dst, _, err = c.m.Evaluate(e.set); err != nil {
			return t, fmt.Errorf("tier 2: %w", err)
		}
	}
	return t, nil
}

// ReferenceFraction is how much of the round's reference improvement an
// update must achieve on its own shard. The ratio depends on the swarm's
// config. Measured: in the adversary tests (MLP 784-64-10, 50 inner steps,
// 10 % top-k, 6 peers) honest updates reach 1.04x to 5.5x the reference and
// noise of honest norm on the honest support at most 0.30x; in the loopback
// test (MLP 784-32-10, 5 inner steps on a 500-sample shard, 1 % top-k, 3
// peers) honest updates reach only 0.42x-0.49x. 0.35 sits between the
// honest and the noise figures of every config measured; erring low lets
// some noise through (clipped, and scored) rather than reject honest work.
const ReferenceFraction = 0.35

// Helps reports whether the update did real work on its own shard: it
// lowered that shard's loss by at least ReferenceFraction of what the
// round's aggregate did for held-out data (by anything, when the reference
// is not positive). Noise, zeros and updates pushing the model elsewhere do
// not; failing it keeps the update out of the model (Tier2Reason).
func Helps(t record.Tier2) bool { return HelpsAt(t, ReferenceFraction) }

// HelpsAt is Helps with the bar at fraction of the reference (0: the
// default ReferenceFraction). The default was measured on MNIST MLPs; a
// swarm whose honest updates sit elsewhere sets verify.reference_fraction.
func HelpsAt(t record.Tier2, fraction float64) bool {
	if fraction == 0 {
		fraction = ReferenceFraction
	}
	own := t.OwnBefore - t.OwnAfter
	return own > 0 && (t.Reference <= 0 || own >= fraction*t.Reference)
}

// OwnIndicator is tier 2's claim about whose work it is: the update Helps,
// and lowered its own shard's loss by at least as much as a random shard's,
// as an update fitted to that shard does. An update trained on other data,
// or last round's movement resent, does not — but neither, now and then,
// does an honest one early in training, when what a peer learns from its
// shard generalises almost fully (own and random improvements within 3 %
// of each other in round 0 of the adversary tests, over 1,000 samples).
// So it weighs in the score, not in the verdict.
func OwnIndicator(t record.Tier2) bool { return OwnIndicatorAt(t, ReferenceFraction) }

// OwnIndicatorAt is OwnIndicator with HelpsAt's fraction.
func OwnIndicatorAt(t record.Tier2, fraction float64) bool {
	return HelpsAt(t, fraction) && t.OwnBefore-t.OwnAfter >= t.RandomBefore-t.RandomAfter
}

// Quality turns tier-2 evidence into a value in {-1, 0, 1}: half for the
// own-shard indicator (OwnIndicator) and half for lowering the held-out
// loss; each half counts -0.5 when it fails. Signs rather than magnitudes,
// so the value does not fade as training converges and losses shrink.
func Quality(t record.Tier2) float64 { return QualityAt(t, ReferenceFraction) }

// QualityAt is Quality with HelpsAt's fraction.
func QualityAt(t record.Tier2, fraction float64) float64 {
	held := t.HeldBefore - t.HeldAfter
	q := -0.5
	if OwnIndicatorAt(t, fraction) {
		q = 0.5
	}
	if held > 0 {
		q += 0.5
	} else {
		q -= 0.5
	}
	return q
}

// Tier2Reason is the rejection a tier-2 check earns: a sampled update that
// does not Help is kept out of the aggregate; "" keeps it.
func Tier2Reason(t record.Tier2) string { return Tier2ReasonAt(t, ReferenceFraction) }

// Tier2ReasonAt is Tier2Reason with HelpsAt's fraction.
func Tier2ReasonAt(t record.Tier2, fraction float64) string {
	if fraction == 0 {
		fraction = ReferenceFraction
	}
	if HelpsAt(t, fraction) {
		return ""
	}
	return fmt.Sprintf("%s: lowered its own shard's loss by %+.4g, under %g of the round's reference %+.4g",
		ReasonTier2, t.OwnBefore-t.OwnAfter, fraction, t.Reference)
}
