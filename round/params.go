package round

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"github.com/swarmtrain/swarmtrain/verify"
)

// Params are the settings a round's math depends on. Every field comes from
// the swarm's config (ParamsOf), which the swarm ID pins, so every role that
// reads the same manifest derives the same Params.
type Params struct {
	Model      train.ModelSpec
	BatchSize  int
	InnerSteps int
	ShardSize  int
	// Inner is the contributors' local optimizer.
	Inner train.OptimizerSpec
	// Codec and Density compress a contributor's update; ErrorFeedback
	// carries what compression drops into the next round.
	Codec         string
	Density       float64
	ErrorFeedback bool
	// MinDensity is the lowest density a peer whose payloads could not
	// be fetched in time is thinned to (DensityFor); 0 or Density: off.
	MinDensity float64
	// Aggregation and TrimFraction combine the accepted updates
	// (gradient.Aggregate).
	Aggregation  string
	TrimFraction float64
	// Outer is the outer optimizer: "nesterov" with OuterMomentum, or "sgd"
	// (no momentum).
	Outer         string
	OuterLR       float64
	OuterMomentum float64
	Tier1         verify.Tier1Params
	Scoring       verify.ScoreParams
	// Tier2Sample is how many accepted contributions tier 2 checks per
	// round where the sealer has the data (0: none).
	Tier2Sample int
	// Audits is how many contributions tier 3 recomputes per round (0:
	// none, and contributions need not commit to their state).
	Audits int
	// ExcludeRounds is how long a proven fault excludes a peer (doubling
	// with each further one; 0: never).
	ExcludeRounds int
	// Overlap runs overlapped rounds (round.overlap): a round's
	// contributions are built on the previous round's base and applied to
	// its own (Built, SeedAfter).
	Overlap bool
	// AuditTolerance is the relative L2 distance within which a replay
	// passes (0: DefaultAuditTolerance; see AuditTol).
	AuditTolerance float64
	// PeerAudits has contributors audit each other (PeerAuditAssignment);
	// needs Audits > 0.
	PeerAudits bool
}

// Outer optimizer names, as written in a swarm config.
const (
	OuterNesterov = "nesterov"
	OuterSGD      = "sgd"
)

// ParamsOf derives a swarm's round parameters from its config.
func ParamsOf(sc *config.Swarm) Params {
	o := sc.Train.OuterOptimizer
	scoring := verify.DefaultScoreParams()
	scoring.ReferenceFraction = sc.Verify.ReferenceFraction
	return Params{
		Model:          ModelSpec(sc),
		BatchSize:      sc.Train.BatchSize,
		InnerSteps:     sc.Train.InnerSteps,
		ShardSize:      sc.Train.ShardSize,
		Inner:          OptimizerSpec(sc.Train.InnerOptimizer),
		Codec:          sc.Compression.Codec,
		Density:        sc.Compression.Density,
		ErrorFeedback:  sc.Compression.ErrorFeedback,
		MinDensity:     sc.Compression.MinDensity,
		Aggregation:    sc.Verify.Aggregation,
		TrimFraction:   sc.Verify.TrimFraction,
		Outer:          o.Name,
		OuterLR:        o.LR,
		OuterMomentum:  o.Momentum,
		Tier1:          verify.DefaultTier1Params(),
		Scoring:        scoring,
		Tier2Sample:    sc.Verify.Tier2Sample,
		Audits:         sc.Verify.Audits,
		ExcludeRounds:  sc.Verify.ExcludeRounds,
		AuditTolerance: sc.Verify.AuditTolerance,
		PeerAudits:     sc.Verify.PeerAudits,
		Overlap:        sc.Round.Overlap,
	}
}

// ModelSpec is the model a swarm config describes; its input shape and
// output size come from the dataset section.
func ModelSpec(sc *config.Swarm) train.ModelSpec {
	m := sc.Model
	return train.ModelSpec{Kind: m.Kind, Hidden: m.Hidden, Channels: m.Channels, Dense: m.Dense,
		Layers: m.Layers, Width: m.Width, Heads: m.Heads, Context: m.Context,
		Input: sc.Data.Shape, Classes: sc.Data.Classes, Mean: sc.Data.Mean, Std: sc.Data.Std}
}

// DataSpec is the dataset a swarm config pins, as train/data loads it.
func DataSpec(sc *config.Swarm) data.Spec {
	s := data.Spec{Kind: sc.DataKind(), Hash: sc.Data.Hash, Classes: sc.Data.Classes, Context: sc.Model.Context, HeldOut: sc.Data.HeldOut,
		Mean: sc.Data.Mean, Std: sc.Data.Std}
	if len(sc.Data.Shape) == 2 {
		s.Rows, s.Cols = sc.Data.Shape[0], sc.Data.Shape[1]
	}
	return s
}

// Weight is what one accepted update weighs in the aggregate. It is derived
// from the config, never taken from the contributor: every contributor
// runs InnerSteps batches of BatchSize, so a peer that claims more samples
// than the round allows gains nothing by it.
func (p Params) Weight() float64 { return float64(p.InnerSteps * p.BatchSize) }

// NewOuter returns the configured outer optimizer for n parameters.
func (p Params) NewOuter(n int) (*gradient.Outer, error) {
	switch p.Outer {
	case OuterNesterov:
		return gradient.NewOuter(n, p.OuterLR, p.OuterMomentum)
	case OuterSGD:
		// Plain SGD: Nesterov's update with no momentum is p -= lr·g.
		return gradient.NewOuter(n, p.OuterLR, 0)
	}
	return nil, fmt.Errorf("train.outer_optimizer.name: unknown outer optimizer %q (want %s or %s)", p.Outer, OuterNesterov, OuterSGD)
}

// NumParams is the model's parameter count.
func (p Params) NumParams() (int, error) { return train.NumParams(p.Model) }

// OptimizerSpec is the train package's view of a config optimizer.
func OptimizerSpec(o config.Optimizer) train.OptimizerSpec {
	return train.OptimizerSpec{Name: o.Name, LR: o.LR, Momentum: o.Momentum, Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay}
}
