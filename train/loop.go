package train

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// Stats describes a run of inner steps.
type Stats struct {
	Steps    int
	Samples  int
	MeanLoss float64
	SumLoss  float64 // the step losses summed in order
}

// Batch is one training batch: normalised images and their labels, or
// text windows of Context+1 tokens each.
type Batch struct {
	X      []float32
	Y      []uint8
	Tokens []uint8
}

// Batcher yields fixed-shape batches from a set, visiting samples in a
// seeded permutation and reshuffling at every pass. Every batch is full:
// when fewer than a batch remain in a pass, the pass ends and they wait for
// the next one (the tail is dropped from that pass, never padded). Samples
// are normalised here, batch by batch, from the set's stored bytes.
type Batcher struct {
	set   *data.Set
	batch int
	rng   interface{ Perm(int) []int }
	perm  []int
	pos   int
	b     Batch
}

// NewBatcher returns the batcher of set for batches of batch samples in
// the order seed fixes.
func NewBatcher(set *data.Set, batch int, seed uint64) (*Batcher, error) {
	if set.N < batch {
		return nil, fmt.Errorf("shard of %d samples is smaller than one batch of %d", set.N, batch)
	}
	b := &Batcher{set: set, batch: batch, rng: data.Rand(seed)}
	if set.IsText() {
		b.b.Tokens = make([]uint8, batch*set.Dim())
	} else {
		b.b.X, b.b.Y = make([]float32, batch*set.Dim()), make([]uint8, batch)
	}
	return b, nil
}

// Set is the set the batcher draws from.
func (b *Batcher) Set() *data.Set { return b.set }

// Next fills and returns the next batch (valid until the next call).
func (b *Batcher) Next() *Batch {
	if b.perm == nil || b.pos+b.batch > len(b.perm) {
		b.perm, b.pos = b.rng.Perm(b.set.N), 0
	}
	d := b.set.Dim()
	for i, j := range b.perm[b.pos : b.pos+b.batch] {
		if b.set.IsText() {
			copy(b.b.Tokens[i*d:(i+1)*d], b.set.Window(j))
			continue
		}
		b.set.Fill(b.b.X[i*d:(i+1)*d], j)
		b.b.Y[i] = b.set.Y[j]
	}
	b.pos += b.batch
	return &b.b
}

// hostLocal is Local for a model whose parameters live in host memory: a
// step on each batch, then the optimizer over the flat vector.
func hostLocal(ctx context.Context, m HostModel, opt Optimizer, b *Batcher, steps int, before func(int)) (Stats, error) {
	var st Stats
	for st.Steps < steps {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if before != nil {
			before(st.Steps)
		}
		batch := b.Next()
		loss, err := m.Step(batch)
		if err != nil {
			return st, err
		}
		if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
			return st, fmt.Errorf("step %d: loss is %v: training diverged (lower the learning rate)", st.Steps, loss)
		}
		opt.Step(m.Params(), m.Grads())
		st.SumLoss += float64(loss)
		st.Steps++
		st.Samples += b.batch
	}
	if st.Steps > 0 {
		st.MeanLoss = st.SumLoss / float64(st.Steps)
	}
	return st, nil
}

// Local runs steps inner steps from m's current parameters on batches drawn
// from shard in the order seed fixes, updating m's parameters through opt.
// This is a contributor's local work in one round.
func Local(ctx context.Context, m Model, opt Optimizer, shard *data.Set, steps int, seed uint64) (Stats, error) {
	b, err := NewBatcher(shard, m.BatchSize(), seed)
	if err != nil {
		return Stats{}, err
	}
	return m.Local(ctx, opt, b, steps, nil)
}

// EpochStats reports progress of Fit. Within an epoch (Done false) only
// Epoch, Step, Steps, Loss, SamplesPerSec and Elapsed are set.
type EpochStats struct {
	Epoch         int
	Step, Steps   int // steps done in this epoch, and per epoch
	Done          bool
	Loss          float64 // mean training loss so far this epoch
	TestLoss      float64
	TestAccuracy  float64
	SamplesPerSec float64
	Elapsed       time.Duration // since Fit began
}

// FitOption configures Fit.
type FitOption func(*fitConfig)

type fitConfig struct {
	cosine        bool
	stepsPerEpoch int
	deadline      time.Time
	evalSamples   int
}

// WithDeadline ends Fit once t has passed, at the end of a stretch of
// progressEvery steps, with an evaluation (a time budget; the schedule
// still spans every epoch).
func WithDeadline(t time.Time) FitOption { return func(c *fitConfig) { c.deadline = t } }

// WithEvalSamples evaluates each epoch on the test set's first n samples
// only (a text's held-out part is large; the caller evaluates it whole at
// the end).
func WithEvalSamples(n int) FitOption { return func(c *fitConfig) { c.evalSamples = n } }

// WithStepsPerEpoch makes an epoch n steps instead of one pass over the
// training set (a text corpus has millions of windows: an "epoch" is then
// a stretch between evaluations).
func WithStepsPerEpoch(n int) FitOption { return func(c *fitConfig) { c.stepsPerEpoch = n } }

// WithCosineDecay anneals the learning rate from its configured value to 0
// over the whole run along a half cosine (Loshchilov & Hutter's SGDR without
// restarts): the end of training takes small steps instead of bouncing
// around the minimum.
func WithCosineDecay() FitOption { return func(c *fitConfig) { c.cosine = true } }

// progressEvery is how many steps pass between in-epoch progress reports:
// about every second or two on a laptop core for the MLP.
const progressEvery = 100

// Fit trains m for epochs passes over trainSet (each pass a fresh seeded
// shuffle, tail shorter than a batch dropped) and evaluates on testSet after
// each. progress, if not nil, gets a report every progressEvery steps and at
// the end of each epoch.
func Fit(ctx context.Context, m Model, opt Optimizer, trainSet, testSet *data.Set, epochs int, seed uint64, progress func(EpochStats), opts ...FitOption) ([]EpochStats, error) {
	var fc fitConfig
	for _, o := range opts {
		o(&fc)
	}
	b, err := NewBatcher(trainSet, m.BatchSize(), seed)
	if err != nil {
		return nil, err
	}
	steps := trainSet.N / m.BatchSize()
	if fc.stepsPerEpoch > 0 {
		steps = fc.stepsPerEpoch
	}
	start := time.Now()
	var out []EpochStats
	for e := 1; e <= epochs; e++ {
		epochStart := time.Now()
		var sum float64
		done := steps // steps run this epoch: fewer when the deadline cuts it
		// Steps run in chunks of progressEvery inside the model's Local (a
		// device engine keeps its parameters between them); the learning
		// rate is set before each step.
		for s := 0; s < steps; {
			n := min(progressEvery, steps-s)
			var before func(int)
			if fc.cosine {
				first := (e-1)*steps + s
				before = func(i int) {
					done := float64(first+i) / float64(epochs*steps)
					opt.SetLRScale(0.5 * (1 + math.Cos(math.Pi*done)))
				}
			}
			st, err := m.Local(ctx, opt, b, n, before)
			if err != nil {
				return out, fmt.Errorf("epoch %d, steps %d-%d: %w", e, s+1, s+n, err)
			}
			sum += st.SumLoss
			s += n
			if !fc.deadline.IsZero() && s < steps && time.Now().After(fc.deadline) {
				done = s // out of time: evaluate what there is
				break
			}
			if progress != nil && s%progressEvery == 0 && s < steps {
				progress(EpochStats{Epoch: e, Step: s, Steps: steps, Loss: sum / float64(s),
					SamplesPerSec: float64(s*m.BatchSize()) / time.Since(epochStart).Seconds(), Elapsed: time.Since(start)})
			}
		}
		sps := float64(done*m.BatchSize()) / time.Since(epochStart).Seconds()
		tl, ta, err := m.Evaluate(testSet.Head(fc.evalSamples))
		if err != nil {
			return out, err
		}
		es := EpochStats{Epoch: e, Step: done, Steps: steps, Done: true, Loss: sum / float64(done), TestLoss: tl, TestAccuracy: ta, SamplesPerSec: sps, Elapsed: time.Since(start)}
		out = append(out, es)
		if progress != nil {
			progress(es)
		}
		if !fc.deadline.IsZero() && time.Now().After(fc.deadline) {
			break
		}
	}
	return out, nil
}
