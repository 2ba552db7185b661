package train

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/swarmtrain/swarmtrain/train/data"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// graphKind is a classifier built as a gorgonia graph: its input shape and
// its logits from the parameter nodes.
type graphKind interface {
	kind
	input(s ModelSpec, batch int) []int
	forward(s ModelSpec, ps []*G.Node, x *G.Node, train bool) (*G.Node, error)
}

// Classifier is a HostModel over images that can also step on raw
// slices (tests and benchmarks).
type Classifier interface {
	HostModel
	// Grad runs forward and backward on one batch of exactly BatchSize
	// samples (x row-major, normalised; y labels) and overwrites Grads.
	Grad(x []float32, y []uint8) (float32, error)
}

// graphModel is a classifier built as two gorgonia graphs over one
// parameter vector: a training graph (forward, loss and symbolic gradients)
// at the training batch size and a forward-only graph at the evaluation
// batch size. Both graphs' weight tensors are backed by slices of params,
// so the flat vector is the model.
type graphModel struct {
	spec    ModelSpec
	batch   int
	classes int
	dim     int
	params  []float32 // the flat parameter vector, backing every weight tensor
	grads   []float32
	shapes  []tensor.Shape // each parameter tensor's shape, in flat order

	trainG  *G.ExprGraph
	trainVM G.VM
	x, y    *tensor.Dense // input batch and one-hot labels, bound once
	loss    *G.Node
	gradNs  G.Nodes // d loss / d param, in flat order

	evalBatch  int
	evalVM     G.VM
	evalX      *tensor.Dense
	evalLogits *G.Node
}

// layerBuilder creates parameter nodes in one graph whose values are backed
// by consecutive slices of a flat vector.
type layerBuilder struct {
	g      *G.ExprGraph
	flat   []float32
	off    int
	nodes  G.Nodes
	shapes []tensor.Shape
}

func (lb *layerBuilder) param(name string, shape ...int) *G.Node {
	n := tensor.Shape(shape).TotalSize()
	backing := lb.flat[lb.off : lb.off+n : lb.off+n]
	lb.off += n
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing))
	var node *G.Node
	if len(shape) == 2 {
		node = G.NewMatrix(lb.g, tensor.Float32, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	} else if len(shape) == 1 {
		node = G.NewVector(lb.g, tensor.Float32, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	} else {
		node = G.NewTensor(lb.g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	}
	lb.nodes = append(lb.nodes, node)
	lb.shapes = append(lb.shapes, tensor.Shape(shape).Clone())
	return node
}

// graphForward builds k's logits on input x from the builder's parameters.
func graphForward(spec ModelSpec, k graphKind, lb *layerBuilder, x *G.Node, train bool) (*G.Node, error) {
	var ps []*G.Node
	for i, p := range k.params(spec) {
		ps = append(ps, lb.param(fmt.Sprintf("p%d", i), p.shape...))
	}
	return k.forward(spec, ps, x, train)
}

func inputNode(g *G.ExprGraph, shape []int, name string) (*G.Node, *tensor.Dense) {
	t := tensor.New(tensor.WithShape(shape...), tensor.Of(tensor.Float32))
	if len(shape) == 2 {
		return G.NewMatrix(g, tensor.Float32, G.WithShape(shape...), G.WithName(name), G.WithValue(t)), t
	}
	return G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t)), t
}

func newGraphModel(spec ModelSpec, k graphKind, batch int, seed uint64, cfg modelConfig) (m *graphModel, err error) {
	// gorgonia reports some shape errors by panicking; a bad spec must be an error.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("building %s model: %v", spec.Kind, r)
		}
	}()
	ps := k.params(spec)
	total := 0
	for _, p := range ps {
		total += size(p.shape)
	}
	numClass := spec.classes()
	m = &graphModel{spec: spec, batch: batch, classes: numClass, dim: spec.rows() * spec.cols(),
		params: make([]float32, total), grads: make([]float32, total), evalBatch: cfg.evalBatch}
	initParams(m.params, ps, seed)

	// Training graph.
	m.trainG = G.NewGraph()
	lb := &layerBuilder{g: m.trainG, flat: m.params}
	x, xt := inputNode(m.trainG, k.input(spec, batch), "x")
	yt := tensor.New(tensor.WithShape(batch, numClass), tensor.Of(tensor.Float32))
	y := G.NewMatrix(m.trainG, tensor.Float32, G.WithShape(batch, numClass), G.WithName("y"), G.WithValue(yt))
	logits, err := graphForward(spec, k, lb, x, true)
	if err != nil {
		return nil, err
	}
	logp, err := G.LogSoftMax(logits)
	if err != nil {
		return nil, err
	}
	picked, err := G.HadamardProd(logp, y)
	if err != nil {
		return nil, err
	}
	sum, err := G.Sum(picked)
	if err != nil {
		return nil, err
	}
	// loss = -sum(y * log p) / batch: the mean cross-entropy.
	if m.loss, err = G.Mul(sum, G.NewConstant(float32(-1)/float32(batch))); err != nil {
		return nil, err
	}
	if m.gradNs, err = G.Grad(m.loss, lb.nodes...); err != nil {
		return nil, err
	}
	m.shapes = lb.shapes
	m.x, m.y = xt, yt
	m.trainVM = G.NewTapeMachine(m.trainG)

	// Forward-only evaluation graph over the same parameter vector.
	eg := G.NewGraph()
	elb := &layerBuilder{g: eg, flat: m.params}
	ex, ext := inputNode(eg, k.input(spec, cfg.evalBatch), "x")
	if m.evalLogits, err = graphForward(spec, k, elb, ex, false); err != nil {
		return nil, err
	}
	m.evalX = ext
	m.evalVM = G.NewTapeMachine(eg)
	return m, nil
}

func (m *graphModel) Spec() ModelSpec                { return m.spec }
func (m *graphModel) NumParams() int                 { return len(m.params) }
func (m *graphModel) Params() []float32              { return m.params }
func (m *graphModel) ReadParams(dst []float32)       { copy(dst, m.params) }
func (m *graphModel) Grads() []float32               { return m.grads }
func (m *graphModel) BatchSize() int                 { return m.batch }
func (m *graphModel) Step(b *Batch) (float32, error) { return m.Grad(b.X, b.Y) }
func (m *graphModel) Close() error                   { m.trainVM.Close(); m.evalVM.Close(); return nil }

func (m *graphModel) Local(ctx context.Context, opt Optimizer, b *Batcher, steps int, before func(int)) (Stats, error) {
	return hostLocal(ctx, m, opt, b, steps, before)
}

func (m *graphModel) WriteParams(p []float32) error {
	if len(p) != len(m.params) {
		return fmt.Errorf("set params: got %d values, model %s has %d", len(p), m.spec.Kind, len(m.params))
	}
	copy(m.params, p)
	return nil
}

func (m *graphModel) Grad(x []float32, y []uint8) (float32, error) {
	if len(y) != m.batch || len(x) != m.batch*m.dim {
		return 0, fmt.Errorf("grad: batch of %d labels and %d values, want exactly %d samples of %d", len(y), len(x), m.batch, m.dim)
	}
	copy(m.x.Data().([]float32), x)
	oh := m.y.Data().([]float32)
	clear(oh)
	for i, l := range y {
		if int(l) >= m.classes {
			return 0, fmt.Errorf("grad: label %d of sample %d out of range", l, i)
		}
		oh[i*m.classes+int(l)] = 1
	}
	defer m.trainVM.Reset()
	if err := m.trainVM.RunAll(); err != nil {
		return 0, fmt.Errorf("grad: %w", err)
	}
	off := 0
	for i, gn := range m.gradNs {
		g := gn.Value().Data().([]float32)
		n := m.shapes[i].TotalSize()
		copy(m.grads[off:off+n], g)
		off += n
	}
	return m.loss.Value().Data().(float32), nil
}

func (m *graphModel) Evaluate(s *data.Set) (loss, accuracy float64, err error) {
	if s.IsText() || s.Dim() != m.dim {
		return 0, 0, fmt.Errorf("evaluate: samples have %d values, model wants %d", s.Dim(), m.dim)
	}
	if s.N == 0 {
		return 0, 0, errors.New("evaluate: empty dataset")
	}
	dim := m.dim
	xb := m.evalX.Data().([]float32)
	var sumLoss float64
	correct := 0
	for start := 0; start < s.N; start += m.evalBatch {
		n := min(m.evalBatch, s.N-start)
		for i := 0; i < n; i++ {
			s.Fill(xb[i*dim:(i+1)*dim], start+i)
		}
		clear(xb[n*dim:]) // pad the tail; padded rows are not counted
		if err := m.evalVM.RunAll(); err != nil {
			m.evalVM.Reset()
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		logits := m.evalLogits.Value().Data().([]float32)
		for i := 0; i < n; i++ {
			y := int(s.Y[start+i])
			if y >= m.classes {
				m.evalVM.Reset()
				return 0, 0, fmt.Errorf("evaluate: label %d of sample %d out of range", y, start+i)
			}
			row := logits[i*m.classes : (i+1)*m.classes]
			l, pred := crossEntropy(row, y)
			sumLoss += l
			if pred == y {
				correct++
			}
		}
		m.evalVM.Reset()
	}
	return sumLoss / float64(s.N), float64(correct) / float64(s.N), nil
}

// crossEntropy returns -log softmax(row)[label] computed stably, and argmax(row).
func crossEntropy(row []float32, label int) (float64, int) {
	mx, arg := row[0], 0
	for j, v := range row {
		if v > mx {
			mx, arg = v, j
		}
	}
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v - mx))
	}
	return math.Log(z) - float64(row[label]-mx), arg
}
