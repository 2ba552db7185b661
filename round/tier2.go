package round

import (
	"context"
	"fmt"

	"github.com/swarmtrain/swarmtrain/storage/record"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Tier2 gives Run the tier-2 evidence of a round's sample. The sealer
// measures it on data (DataTier2); an observer takes what the record says
// (Recheck), since Run re-draws the sample and the verdict rule itself.
type Tier2 interface {
	// Size is how many accepted contributions the round samples; 0 turns
	// tier 2 off for the round (and the record carries no sample).
	Size() int
	// Check returns the evidence for every sampled peer.
	Check(ctx context.Context, r Tier2Round) (map[string]record.Tier2, error)
}

// Tier2Round is what a tier-2 check of one round is given.
type Tier2Round struct {
	Round      int64
	Seed       int64 // the round's shard seed: own shards are drawn with it
	SampleSeed int64 // fixes the random and held-out sets
	Base       []float32
	// Reference is the aggregate of every update tier 1 accepted.
	Reference []float32
	Sample    []string // the sampled peers, sorted
	Updates   map[string][]float32
}

// DataTier2 measures tier 2 on the training and held-out sets
// (verify.Tier2Checker). Model is scratch space: its parameters are left at
// the round's base.
type DataTier2 struct {
	Model      train.Model
	Train      *data.Set
	Test       *data.Set
	ShardSize  int
	SampleSize int
}

// Size is SampleSize, or 0 without the data.
func (d *DataTier2) Size() int {
	if d == nil || d.Train == nil || d.Test == nil || d.Model == nil {
		return 0
	}
	return d.SampleSize
}

// Check evaluates each sampled update on its contributor's shard, a random
// shard and held-out data.
func (d *DataTier2) Check(ctx context.Context, r Tier2Round) (map[string]record.Tier2, error) {
	random, held := verify.Tier2Sets(r.SampleSeed, d.Train, d.Test, d.ShardSize)
	checker, err := verify.NewTier2Checker(d.Model, r.Base, random, held)
	if err != nil {
		return nil, err
	}
	if err := checker.SetReference(r.Reference); err != nil {
		return nil, err
	}
	out := map[string]record.Tier2{}
	for _, p := range r.Sample {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := checker.Check(verify.OwnShard(d.Train, r.Seed, p, d.ShardSize), r.Updates[p])
		if err != nil {
			return nil, err
		}
		out[p] = t
	}
	return out, nil
}

// recordedTier2 is the evidence a sealed record carries: what an observer
// replays the round with.
type recordedTier2 struct {
	rec *record.RoundRecord
}

func (r recordedTier2) Size() int {
	if r.rec.SampleSize == nil {
		return 0
	}
	return int(*r.rec.SampleSize)
}

func (r recordedTier2) Check(_ context.Context, tr Tier2Round) (map[string]record.Tier2, error) {
	out := map[string]record.Tier2{}
	for _, p := range tr.Sample {
		for _, e := range r.rec.Entries {
			if e.Peer == p && e.Tier2 != nil {
				out[p] = *e.Tier2
			}
		}
		if _, ok := out[p]; !ok {
			var checked []string
			for _, e := range r.rec.Entries {
				if e.Tier2 != nil {
					checked = append(checked, e.Peer)
				}
			}
			return nil, fmt.Errorf("tier 2 checked %v, the sample draws %v", checked, tr.Sample)
		}
	}
	return out, nil
}
