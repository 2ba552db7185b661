// Package train holds what a peer needs to train locally: models built as
// gorgonia graphs behind one flat parameter vector, inner optimizers, and the
// loops that run H inner steps (a swarm round) or whole epochs (the
// single-process baseline). It never touches the network.
package train

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// ModelSpec names a model from the registry and its shape.
type ModelSpec struct {
	// Kind is "mlp" or "cnn".
	Kind string `json:"kind"`
	// Hidden are the hidden layer widths of an mlp, input to output.
	Hidden []int `json:"hidden,omitempty"`
	// Channels are the output channels of a cnn's two 5x5 convolutions.
	Channels []int `json:"channels,omitempty"`
	// Dense is the width of a cnn's hidden dense layer.
	Dense int `json:"dense,omitempty"`
}

// Input and output sizes of the models in the registry (MNIST).
const (
	imageRows = 28
	imageCols = 28
	numClass  = 10
)

func (s ModelSpec) validate() error {
	switch s.Kind {
	case "mlp":
		if len(s.Hidden) == 0 {
			return fmt.Errorf("model.hidden: an mlp needs at least one hidden layer")
		}
		for i, h := range s.Hidden {
			if h <= 0 {
				return fmt.Errorf("model.hidden[%d]: must be > 0, got %d", i, h)
			}
		}
	case "cnn":
		if len(s.Channels) != 2 {
			return fmt.Errorf("model.channels: a cnn needs exactly 2 convolution widths, got %d", len(s.Channels))
		}
		for i, c := range s.Channels {
			if c <= 0 {
				return fmt.Errorf("model.channels[%d]: must be > 0, got %d", i, c)
			}
		}
		if s.Dense <= 0 {
			return fmt.Errorf("model.dense: must be > 0, got %d", s.Dense)
		}
	default:
		return fmt.Errorf("model.kind: unknown model %q (want mlp or cnn)", s.Kind)
	}
	return nil
}

// Model is a trainable model behind one flat parameter vector.
//
// Params is the live parameter vector: the gorgonia graph reads its weights
// from this very slice, so writing into it changes the model and reading it
// needs no copy. Grads is filled by Grad. A Model is not safe for concurrent
// use.
type Model interface {
	Spec() ModelSpec
	NumParams() int
	// Params is the live flat parameter vector (see Model).
	Params() []float32
	// SetParams copies p into the parameter vector.
	SetParams(p []float32) error
	// Grads is the flat gradient of the last Grad call.
	Grads() []float32
	// BatchSize is the fixed batch shape of Grad.
	BatchSize() int
	// Grad runs forward and backward on one batch of exactly BatchSize
	// samples (x row-major, y labels) and overwrites Grads. It returns the
	// batch's mean loss.
	Grad(x []float32, y []uint8) (float32, error)
	// Evaluate returns mean loss and accuracy over every sample of s.
	Evaluate(s *data.Set) (loss, accuracy float64, err error)
	Close() error
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
	return newGraphModel(spec, batchSize, seed, cfg)
}

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
	shapes, _ := paramShapes(spec)
	var names []string
	switch spec.Kind {
	case "mlp":
		for i := 0; i < len(shapes)/2; i++ {
			names = append(names, fmt.Sprintf("layers.%d.weight", i), fmt.Sprintf("layers.%d.bias", i))
		}
	case "cnn":
		names = []string{"conv1.weight", "conv2.weight", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
	}
	out := make([]Tensor, len(shapes))
	for i, s := range shapes {
		out[i] = Tensor{Name: names[i], Shape: s}
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
		k := 1
		for _, d := range t.Shape {
			k *= d
		}
		n += k
	}
	return n, nil
}
