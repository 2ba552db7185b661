// Package train holds what a peer needs to train locally: a registry of
// models behind one interface (mlp and cnn as gorgonia graphs, the
// transformer as a fused Go kernel), inner optimizers, and the loops that
// run H inner steps (a swarm round) or whole epochs (the single-process
// baseline). It never touches the network.
package train

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// ModelSpec names a model from the registry and its shape. Input and
// Classes come from the dataset; zero values mean MNIST's (28x28, 10).
type ModelSpec struct {
	// Kind is a registered model: mlp, cnn or transformer.
	Kind string `json:"kind"`
	// Hidden are the hidden layer widths of an mlp, input to output.
	Hidden []int `json:"hidden,omitempty"`
	// Channels are the output channels of a cnn's two 5x5 convolutions.
	Channels []int `json:"channels,omitempty"`
	// Dense is the width of a cnn's hidden dense layer.
	Dense int `json:"dense,omitempty"`
	// Layers, Width, Heads and Context shape a transformer: blocks, model
	// width, attention heads (dividing Width) and context length.
	Layers  int `json:"layers,omitempty"`
	Width   int `json:"width,omitempty"`
	Heads   int `json:"heads,omitempty"`
	Context int `json:"context,omitempty"`
	// Input is an image sample's shape (rows, cols).
	Input []int `json:"input,omitempty"`
	// Classes is the output size: labels, or a transformer's vocabulary.
	Classes int `json:"classes,omitempty"`
}

func (s ModelSpec) rows() int {
	if len(s.Input) == 2 {
		return s.Input[0]
	}
	return 28
}

func (s ModelSpec) cols() int {
	if len(s.Input) == 2 {
		return s.Input[1]
	}
	return 28
}

func (s ModelSpec) classes() int {
	if s.Classes == 0 {
		return 10
	}
	return s.Classes
}

// Text reports whether the model reads token windows (a language model)
// rather than images.
func (s ModelSpec) Text() bool { return s.Kind == "transformer" }

// param is one parameter tensor of a model's flat vector: its name, shape
// and how it starts (normal with std Std when Std > 0, else One or zero).
type param struct {
	name  string
	shape []int
	std   float64
	one   bool
}

// kind is one model of the registry; each lives in its own file and
// registers itself.
type kind interface {
	validate(s ModelSpec) error
	// params lists the parameter tensors in flat order.
	params(s ModelSpec) []param
	build(s ModelSpec, batch int, seed uint64, cfg modelConfig) (Model, error)
}

var kinds = map[string]kind{}

func register(name string, k kind) { kinds[name] = k }

// Kinds lists the registered model kinds, sorted.
func Kinds() []string { return slices.Sorted(maps.Keys(kinds)) }

func (s ModelSpec) validate() error {
	k, ok := kinds[s.Kind]
	if !ok {
		return fmt.Errorf("model.kind: unknown model %q (want one of %v)", s.Kind, Kinds())
	}
	if len(s.Input) != 0 && (len(s.Input) != 2 || s.Input[0] <= 0 || s.Input[1] <= 0) {
		return fmt.Errorf("data.shape: want 2 positive sizes (rows, cols), got %v", s.Input)
	}
	if s.Classes < 0 || s.Classes > 256 {
		return fmt.Errorf("data.classes: must be in 2..256, got %d", s.Classes)
	}
	return k.validate(s)
}

// Model is a trainable model behind one flat parameter vector.
//
// The parameters live where the model's engine keeps them (host memory on
// the CPU, device memory on a GPU): ReadParams and WriteParams are the only
// sync points, and Local runs a whole round of inner steps (with the
// optimizer) without handing the parameters back in between, so an engine
// on a device needs no host round trip per step. A Model is not safe for
// concurrent use.
type Model interface {
	Spec() ModelSpec
	NumParams() int
	// ReadParams copies the parameters into dst (NumParams values).
	ReadParams(dst []float32)
	// WriteParams sets the parameters from src (NumParams values).
	WriteParams(src []float32) error
	// BatchSize is the fixed batch shape of a training step.
	BatchSize() int
	// Local runs steps inner steps on batches from b, updating the
	// parameters through opt; before, if not nil, is called before each
	// step with its index (learning-rate schedules).
	Local(ctx context.Context, opt Optimizer, b *Batcher, steps int, before func(step int)) (Stats, error)
	// Evaluate returns the mean loss per prediction over every sample of s
	// and the fraction predicted right (for text: next characters).
	Evaluate(s *data.Set) (loss, accuracy float64, err error)
	Close() error
}

// HostModel is a Model whose engine keeps the parameters in host memory
// and steps one batch at a time: Params is the live vector, Step fills
// Grads. The CPU engines are HostModels; hostLocal is their Local.
type HostModel interface {
	Model
	Params() []float32
	Grads() []float32
	// Step runs forward and backward on one batch, overwrites Grads and
	// returns the batch's mean loss.
	Step(b *Batch) (float32, error)
}

// Snapshot returns a copy of m's parameters.
func Snapshot(m Model) []float32 {
	p := make([]float32, m.NumParams())
	m.ReadParams(p)
	return p
}

// Metrics are what a model's evaluation means for its task.
type Metrics struct {
	Loss     float64 // mean cross-entropy, nats per prediction
	Accuracy float64
	// BPC and Perplexity are a language model's: bits per character and
	// exp(loss). Zero for a classifier.
	BPC, Perplexity float64
}

// MetricsOf turns an evaluation's loss and accuracy into spec's metrics.
func MetricsOf(spec ModelSpec, loss, accuracy float64) Metrics {
	m := Metrics{Loss: loss, Accuracy: accuracy}
	if spec.Text() {
		m.BPC, m.Perplexity = loss/math.Ln2, math.Exp(loss)
	}
	return m
}

// Option configures New.
type Option func(*modelConfig)

type modelConfig struct {
	device    Device
	evalBatch int
}

// WithDevice selects where the model's steps run (default CPU).
func WithDevice(d Device) Option { return func(c *modelConfig) { c.device = d } }

// WithEvalBatch sets the batch size of the forward-only evaluation graph.
func WithEvalBatch(n int) Option { return func(c *modelConfig) { c.evalBatch = n } }

// defaultEvalBatch divides MNIST's 10,000 test images exactly and keeps the
// evaluation graph's activations small (a few MB for the cnn).
const defaultEvalBatch = 500

// maxParams bounds a model's parameter vector (1 GiB of float32).
const maxParams = 1 << 28

// New builds the model spec describes with a fixed training batch size and
// weights initialised deterministically from seed.
func New(spec ModelSpec, batchSize int, seed uint64, opts ...Option) (Model, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	if batchSize <= 0 {
		return nil, fmt.Errorf("train.batch_size: must be > 0, got %d", batchSize)
	}
	cfg := modelConfig{evalBatch: defaultEvalBatch}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.evalBatch <= 0 {
		return nil, fmt.Errorf("eval batch: must be > 0, got %d", cfg.evalBatch)
	}
	if cfg.device.Kind == "cuda" {
		return nil, fmt.Errorf("device cuda: not available in this build")
	}
	// A swarm manifest comes from the network: its model must not make a
	// peer allocate without limit.
	if n, _ := NumParams(spec); n > maxParams {
		return nil, fmt.Errorf("model: %d parameters, at most %d", n, maxParams)
	}
	return kinds[spec.Kind].build(spec, batchSize, seed, cfg)
}

// initParams fills p from seed's PCG stream, tensor by tensor: normal
// values with each tensor's std (He-normal, sqrt(2/fan_in), for ReLU
// layers), ones for gains, zeros for biases.
func initParams(p []float32, ps []param, seed uint64) {
	r := data.Rand(seed)
	off := 0
	for _, t := range ps {
		n := size(t.shape)
		switch {
		case t.std > 0:
			for j := off; j < off+n; j++ {
				p[j] = float32(r.NormFloat64() * t.std)
			}
		case t.one:
			for j := off; j < off+n; j++ {
				p[j] = 1
			}
		}
		off += n
	}
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// heStd is He-normal's standard deviation for a layer of fan-in fan.
func heStd(fan int) float64 { return math.Sqrt(2 / float64(fan)) }

// Tensor names one parameter tensor of the flat vector and its shape; the
// tensors of Layout tile the vector in order.
type Tensor struct {
	Name  string
	Shape []int
}

// Layout lists the parameter tensors of spec in flat order, with names a
// PyTorch user recognises. Dense weights are stored (in, out), the
// transpose of torch.nn.Linear's (out, in).
func Layout(spec ModelSpec) ([]Tensor, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	ps := kinds[spec.Kind].params(spec)
	out := make([]Tensor, len(ps))
	for i, p := range ps {
		out[i] = Tensor{Name: p.name, Shape: p.shape}
	}
	return out, nil
}

// NumParams is the length of spec's flat parameter vector, without building
// the model.
func NumParams(spec ModelSpec) (int, error) {
	ts, err := Layout(spec)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range ts {
		n += size(t.Shape)
	}
	return n, nil
}
