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
}

// batcher yields fixed-shape batches from a set, visiting samples in a
// seeded permutation and reshuffling at every pass. Every batch is full:
// when fewer than a batch remain in a pass, the pass ends and they wait for
// the next one (the tail is dropped from that pass, never padded).
type batcher struct {
	set   *data.Set
	batch int
	rng   interface{ Perm(int) []int }
	perm  []int
	pos   int
	x     []float32
	y     []uint8
}

func newBatcher(set *data.Set, batch int, seed uint64) (*batcher, error) {
	if set.N < batch {
		return nil, fmt.Errorf("shard of %d samples is smaller than one batch of %d", set.N, batch)
	}
	return &batcher{set: set, batch: batch, rng: data.Rand(seed), x: make([]float32, batch*set.Dim()), y: make([]uint8, batch)}, nil
}

// next fills and returns the next batch; newPass reports a fresh shuffle.
func (b *batcher) next() (x []float32, y []uint8, newPass bool) {
	if b.perm == nil || b.pos+b.batch > len(b.perm) {
		b.perm, b.pos, newPass = b.rng.Perm(b.set.N), 0, true
	}
	d := b.set.Dim()
	for i, j := range b.perm[b.pos : b.pos+b.batch] {
		copy(b.x[i*d:(i+1)*d], b.set.X[j*d:(j+1)*d])
		b.y[i] = b.set.Y[j]
	}
	b.pos += b.batch
	return b.x, b.y, newPass
}

// Local runs steps inner steps from m's current parameters on batches drawn
// from shard in the order seed fixes, updating m's parameters through opt.
// This is a contributor's local work in one round.
func Local(ctx context.Context, m Model, opt Optimizer, shard *data.Set, steps int, seed uint64) (Stats, error) {
	b, err := newBatcher(shard, m.BatchSize(), seed)
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	var sum float64
	for st.Steps < steps {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		x, y, _ := b.next()
		loss, err := m.Grad(x, y)
		if err != nil {
			return st, err
		}
		if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
			return st, fmt.Errorf("step %d: loss is %v: training diverged (lower the learning rate)", st.Steps, loss)
		}
		opt.Step(m.Params(), m.Grads())
		sum += float64(loss)
		st.Steps++
		st.Samples += len(y)
	}
	if st.Steps > 0 {
		st.MeanLoss = sum / float64(st.Steps)
	}
	return st, nil
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

type fitConfig struct{ cosine bool }

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
	b, err := newBatcher(trainSet, m.BatchSize(), seed)
	if err != nil {
		return nil, err
	}
	steps := trainSet.N / m.BatchSize()
	start := time.Now()
	var out []EpochStats
	for e := 1; e <= epochs; e++ {
		epochStart := time.Now()
		var sum float64
		for s := 1; s <= steps; s++ {
			if err := ctx.Err(); err != nil {
				return out, err
			}
			if fc.cosine {
				done := float64((e-1)*steps+s-1) / float64(epochs*steps)
				opt.SetLRScale(0.5 * (1 + math.Cos(math.Pi*done)))
			}
			x, y, _ := b.next()
			loss, err := m.Grad(x, y)
			if err != nil {
				return out, err
			}
			if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
				return out, fmt.Errorf("epoch %d step %d: loss is %v: training diverged (lower the learning rate)", e, s, loss)
			}
			opt.Step(m.Params(), m.Grads())
			sum += float64(loss)
			if progress != nil && s%progressEvery == 0 && s < steps {
				progress(EpochStats{Epoch: e, Step: s, Steps: steps, Loss: sum / float64(s),
					SamplesPerSec: float64(s*m.BatchSize()) / time.Since(epochStart).Seconds(), Elapsed: time.Since(start)})
			}
		}
		sps := float64(steps*m.BatchSize()) / time.Since(epochStart).Seconds()
		tl, ta, err := m.Evaluate(testSet)
		if err != nil {
			return out, err
		}
		es := EpochStats{Epoch: e, Step: steps, Steps: steps, Done: true, Loss: sum / float64(steps), TestLoss: tl, TestAccuracy: ta, SamplesPerSec: sps, Elapsed: time.Since(start)}
		out = append(out, es)
		if progress != nil {
			progress(es)
		}
	}
	return out, nil
}
