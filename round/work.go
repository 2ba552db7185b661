package round

import (
	"context"
	"fmt"
	"slices"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// Worker is a contributor's local work and the private state it carries
// across rounds: the model it trains, the inner optimizer's state and the
// error-feedback residual.
type Worker struct {
	p     Params
	model train.Model
	opt   train.Optimizer
	codec gradient.Codec
	ef    *gradient.ErrorFeedback // nil when the swarm turns error feedback off
}

// NewWorker returns the worker of a swarm with params p, training model.
func NewWorker(p Params, model train.Model) (*Worker, error) {
	n := model.NumParams()
	opt, err := train.NewOptimizer(p.Inner, n)
	if err != nil {
		return nil, fmt.Errorf("train.inner_optimizer: %w", err)
	}
	codec, err := gradient.NewCodec(p.Codec, p.Density)
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	w := &Worker{p: p, model: model, opt: opt, codec: codec}
	if p.ErrorFeedback {
		w.ef = gradient.NewErrorFeedback(n, 0)
	}
	return w, nil
}

// Codec is the codec the worker encodes with.
func (w *Worker) Codec() gradient.Codec { return w.codec }

// Work is what a contributor does in a round: InnerSteps of the inner
// optimizer on shard, starting from base (minus the error-feedback
// residual, which the update then carries: gradient.ErrorFeedback.
// CompressWhole), with batches drawn with seed. It returns the encoded
// update, the update before compression and the local statistics.
func (w *Worker) Work(ctx context.Context, base []float32, shard *data.Set, seed uint64) (payload []byte, delta []float32, stats train.Stats, err error) {
	if n := w.model.NumParams(); len(base) != n {
		return nil, nil, stats, fmt.Errorf("base model has %d parameters, the worker's %d", len(base), n)
	}
	p := slices.Clone(base)
	if w.ef != nil {
		for i, e := range w.ef.Residual() {
			p[i] -= e
		}
	}
	if err := w.model.WriteParams(p); err != nil {
		return nil, nil, stats, err
	}
	if stats, err = train.Local(ctx, w.model, w.opt, shard, w.p.InnerSteps, seed); err != nil {
		return nil, nil, stats, err
	}
	w.model.ReadParams(p)
	delta = make([]float32, len(p))
	for i := range delta {
		delta[i] = base[i] - p[i]
	}
	if w.ef != nil {
		payload, err = w.ef.CompressWhole(w.codec, delta)
	} else {
		payload, err = gradient.Marshal(w.codec, delta)
	}
	return payload, delta, stats, err
}

// Shard is the part of the training set a peer trains on in a round drawn
// with seed: the same draw tier 2 checks an update against
// (verify.OwnShard is its first Tier2EvalSamples).
func Shard(trainSet *data.Set, seed int64, peer string, shardSize int) *data.Set {
	return trainSet.Subset(data.Assign(uint64(seed), peer, trainSet.N, shardSize))
}
