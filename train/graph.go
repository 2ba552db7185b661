package train

import (
	"errors"
	"fmt"
	"math"

	"github.com/swarmtrain/swarmtrain/train/data"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// graphModel is a Model built as two gorgonia graphs over one parameter
// vector: a training graph (forward, loss and symbolic gradients) at the
// training batch size and a forward-only graph at the evaluation batch size.
// Both graphs' weight tensors are backed by slices of params, so the flat
// vector is the model.
type graphModel struct {
	spec   ModelSpec
	batch  int
	params []float32 // the flat parameter vector, backing every weight tensor
	grads  []float32
	shapes []tensor.Shape // each parameter tensor's shape, in flat order

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

// paramShapes lists every parameter tensor's shape and the init fan-in, in
// flat order, so the vector can be sized and initialised before any graph.
func paramShapes(spec ModelSpec) (shapes [][]int, fanIn []int) {
	add := func(fan int, s ...int) { shapes = append(shapes, s); fanIn = append(fanIn, fan) }
	switch spec.Kind {
	case "mlp":
		in := imageRows * imageCols
		for _, h := range append(append([]int{}, spec.Hidden...), numClass) {
			add(in, in, h)
			add(0, h) // bias
			in = h
		}
	case "cnn":
		c1, c2 := spec.Channels[0], spec.Channels[1]
		add(1*5*5, c1, 1, 5, 5)
		add(c1*5*5, c2, c1, 5, 5)
		flat := c2 * (imageRows / 4) * (imageCols / 4)
		add(flat, flat, spec.Dense)
		add(0, spec.Dense)
		add(spec.Dense, spec.Dense, numClass)
		add(0, numClass)
	}
	return shapes, fanIn
}

// forward builds the logits of spec on input x (batch rows) from the
// builder's parameters; train says whether the graph will be differentiated.
func forward(spec ModelSpec, lb *layerBuilder, x *G.Node, train bool) (*G.Node, error) {
	shapes, _ := paramShapes(spec)
	ps := make([]*G.Node, len(shapes))
	for i, s := range shapes {
		ps[i] = lb.param(fmt.Sprintf("p%d", i), s...)
	}
	dense := func(h, w, b *G.Node, relu bool) (*G.Node, error) {
		z, err := G.Mul(h, w)
		if err != nil {
			return nil, err
		}
		if z, err = G.BroadcastAdd(z, b, nil, []byte{0}); err != nil {
			return nil, err
		}
		if relu {
			return G.Rectify(z)
		}
		return z, nil
	}
	switch spec.Kind {
	case "mlp":
		h := x
		var err error
		for i := 0; i < len(ps); i += 2 {
			if h, err = dense(h, ps[i], ps[i+1], i+2 < len(ps)); err != nil {
				return nil, err
			}
		}
		return h, nil
	case "cnn":
		// Two blocks of 5x5 convolution ('same' padding), ReLU and 2x2 max
		// pooling, as one op each (see convPool); the second returns the
		// flattened batch × features matrix the dense layers take.
		h, err := convPoolNode(x, ps[0], train, false, false)
		if err != nil {
			return nil, err
		}
		if h, err = convPoolNode(h, ps[1], train, true, true); err != nil {
			return nil, err
		}
		if h, err = dense(h, ps[2], ps[3], true); err != nil {
			return nil, err
		}
		return dense(h, ps[4], ps[5], false)
	}
	return nil, fmt.Errorf("model.kind: unknown model %q", spec.Kind)
}

func inputNode(g *G.ExprGraph, spec ModelSpec, batch int, name string) (*G.Node, *tensor.Dense) {
	if spec.Kind == "cnn" {
		t := tensor.New(tensor.WithShape(batch, 1, imageRows, imageCols), tensor.Of(tensor.Float32))
		return G.NewTensor(g, tensor.Float32, 4, G.WithShape(batch, 1, imageRows, imageCols), G.WithName(name), G.WithValue(t)), t
	}
	t := tensor.New(tensor.WithShape(batch, imageRows*imageCols), tensor.Of(tensor.Float32))
	return G.NewMatrix(g, tensor.Float32, G.WithShape(batch, imageRows*imageCols), G.WithName(name), G.WithValue(t)), t
}

func newGraphModel(spec ModelSpec, batch int, seed uint64, cfg modelConfig) (m *graphModel, err error) {
	// gorgonia reports some shape errors by panicking; a bad spec must be an error.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("building %s model: %v", spec.Kind, r)
		}
	}()
	if cfg.device.Kind == "cuda" {
		return nil, errors.New("device cuda: not available in this build")
	}
	shapes, fanIn := paramShapes(spec)
	total := 0
	for _, s := range shapes {
		total += tensor.Shape(s).TotalSize()
	}
	m = &graphModel{spec: spec, batch: batch, params: make([]float32, total), grads: make([]float32, total), evalBatch: cfg.evalBatch}
	initParams(m.params, shapes, fanIn, seed)

	// Training graph.
	m.trainG = G.NewGraph()
	lb := &layerBuilder{g: m.trainG, flat: m.params}
	x, xt := inputNode(m.trainG, spec, batch, "x")
	yt := tensor.New(tensor.WithShape(batch, numClass), tensor.Of(tensor.Float32))
	y := G.NewMatrix(m.trainG, tensor.Float32, G.WithShape(batch, numClass), G.WithName("y"), G.WithValue(yt))
	logits, err := forward(spec, lb, x, true)
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
	ex, ext := inputNode(eg, spec, cfg.evalBatch, "x")
	if m.evalLogits, err = forward(spec, elb, ex, false); err != nil {
		return nil, err
	}
	m.evalX = ext
	m.evalVM = G.NewTapeMachine(eg)
	return m, nil
}

// initParams fills weights with He-normal values (std sqrt(2/fan_in), right
// for ReLU layers) from a PRNG seeded with seed; biases (fan-in 0) start at 0.
func initParams(p []float32, shapes [][]int, fanIn []int, seed uint64) {
	r := data.Rand(seed)
	off := 0
	for i, s := range shapes {
		n := tensor.Shape(s).TotalSize()
		if fanIn[i] > 0 {
			std := math.Sqrt(2 / float64(fanIn[i]))
			for j := off; j < off+n; j++ {
				p[j] = float32(r.NormFloat64() * std)
			}
		}
		off += n
	}
}

func (m *graphModel) Spec() ModelSpec   { return m.spec }
func (m *graphModel) NumParams() int    { return len(m.params) }
func (m *graphModel) Params() []float32 { return m.params }
func (m *graphModel) Grads() []float32  { return m.grads }
func (m *graphModel) BatchSize() int    { return m.batch }
func (m *graphModel) Close() error      { m.trainVM.Close(); m.evalVM.Close(); return nil }

func (m *graphModel) SetParams(p []float32) error {
	if len(p) != len(m.params) {
		return fmt.Errorf("set params: got %d values, model %s has %d", len(p), m.spec.Kind, len(m.params))
	}
	copy(m.params, p)
	return nil
}

func (m *graphModel) Grad(x []float32, y []uint8) (float32, error) {
	dim := imageRows * imageCols
	if len(y) != m.batch || len(x) != m.batch*dim {
		return 0, fmt.Errorf("grad: batch of %d labels and %d values, want exactly %d samples of %d", len(y), len(x), m.batch, dim)
	}
	copy(m.x.Data().([]float32), x)
	oh := m.y.Data().([]float32)
	clear(oh)
	for i, l := range y {
		if l >= numClass {
			return 0, fmt.Errorf("grad: label %d of sample %d out of range", l, i)
		}
		oh[i*numClass+int(l)] = 1
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
	dim := imageRows * imageCols
	if s.Dim() != dim {
		return 0, 0, fmt.Errorf("evaluate: samples have %d values, model wants %d", s.Dim(), dim)
	}
	if s.N == 0 {
		return 0, 0, errors.New("evaluate: empty dataset")
	}
	xb := m.evalX.Data().([]float32)
	var sumLoss float64
	correct := 0
	for start := 0; start < s.N; start += m.evalBatch {
		n := min(m.evalBatch, s.N-start)
		copy(xb, s.X[start*dim:(start+n)*dim])
		clear(xb[n*dim:]) // pad the tail; padded rows are not counted
		if err := m.evalVM.RunAll(); err != nil {
			m.evalVM.Reset()
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		logits := m.evalLogits.Value().Data().([]float32)
		for i := 0; i < n; i++ {
			row := logits[i*numClass : (i+1)*numClass]
			l, pred := crossEntropy(row, int(s.Y[start+i]))
			sumLoss += l
			if pred == int(s.Y[start+i]) {
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
