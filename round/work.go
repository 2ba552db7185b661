package round

import (
	"context"
	"fmt"
	"slices"

	"github.com/swarmtrain/swarmtrain/gradient"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
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
	// density is the codec's: p.Density unless SetDensity changed it.
	density float64
	ef      *gradient.ErrorFeedback // nil when the swarm turns error feedback off
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
	w := &Worker{p: p, model: model, opt: opt, codec: codec, density: p.Density}
	if p.ErrorFeedback {
		w.ef = gradient.NewErrorFeedback(n, 0)
	}
	return w, nil
}

// Codec is the codec the worker encodes with.
func (w *Worker) Codec() gradient.Codec { return w.codec }

// Density is the density the worker encodes at.
func (w *Worker) Density() float64 { return w.density }

// SetDensity makes the worker encode at density d from its next Work on:
// the density the ledger assigns its peer (Params.DensityFor). The
// error-feedback residual carries what the sparser payload drops.
func (w *Worker) SetDensity(d float64) error {
	if d == w.density {
		return nil
	}
	codec, err := gradient.NewCodec(w.p.Codec, d)
	if err != nil {
		return fmt.Errorf("compression: %w", err)
	}
	w.codec, w.density = codec, d
	return nil
}

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

// WorkerStateName is the tensor a worker's private state is stored as.
const WorkerStateName = "worker.state"

// State is the worker's private state as one vector: the error-feedback
// residual (when on), then the inner optimizer's state (train.Optimizer.
// State). With the round's public inputs it fixes what Work computes, so a
// contribution commits to it (record.Contribution Start and End, the CID
// of StateFile) and an auditor replays from it (Audit).
func (w *Worker) State() []float32 {
	var s []float32
	if w.ef != nil {
		s = append(s, w.ef.Residual()...)
	}
	return append(s, w.opt.State()...)
}

// SetState restores a State.
func (w *Worker) SetState(s []float32) error {
	n := 0
	if w.ef != nil {
		n = len(w.ef.Residual())
		if len(s) < n {
			return fmt.Errorf("worker state: %d values, the residual alone has %d", len(s), n)
		}
	}
	if err := w.opt.SetState(s[n:]); err != nil {
		return fmt.Errorf("worker state: %w", err)
	}
	if w.ef != nil {
		copy(w.ef.Residual(), s[:n])
	}
	return nil
}

// StateFile is the file a worker state is committed to by CID.
func StateFile(s []float32) ([]byte, error) { return VectorFile(WorkerStateName, s) }

// StateLen is the length of a worker's state for n parameters.
func (p Params) StateLen(n int) (int, error) {
	opt, err := train.NewOptimizer(p.Inner, n)
	if err != nil {
		return 0, fmt.Errorf("train.inner_optimizer: %w", err)
	}
	k := len(opt.State())
	if p.ErrorFeedback {
		k += n
	}
	return k, nil
}

// StateOf decodes a committed worker state file (StateFile) holding want
// values.
func StateOf(file []byte, want int) ([]float32, error) {
	return NamedVector(file, WorkerStateName, want)
}

// NamedVector decodes a one-tensor vector file (VectorFile) whose tensor is
// name and holds want values.
func NamedVector(file []byte, name string, want int) ([]float32, error) {
	ts, _, err := safetensors.Decode(file)
	if err != nil {
		return nil, err
	}
	if len(ts) != 1 || ts[0].Name != name {
		return nil, fmt.Errorf("not a %s file (one tensor %s)", name, name)
	}
	if len(ts[0].Data) != want {
		return nil, fmt.Errorf("%s: %d values, want %d", name, len(ts[0].Data), want)
	}
	return ts[0].Data, nil
}
