package train

import (
	"fmt"
	"hash"
	"hash/fnv"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Gorgonia ops around convPool. The forward op takes (x, w) and returns the
// pooled block; its symbolic derivative is three ops that share the block's
// state: convPoolScatter (upstream gradient → gradient of the convolution
// output), convPoolDW and convPoolDX. Each returns a tensor over a buffer
// the block owns, so a step allocates nothing; a later op that overwrites
// one of them in place only touches a buffer the next step rewrites.

func tensorT(dims int) hm.Type { return G.TensorType{Dims: dims, Of: G.Float32} }

func opHash(op interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	op.WriteHash(h)
	return h.Sum32()
}

// floats returns the float32 backing of a dense tensor of exactly n values.
func floats(v G.Value, n int, what string) ([]float32, error) {
	t, ok := v.(tensor.Tensor)
	if !ok {
		return nil, fmt.Errorf("%s: not a tensor", what)
	}
	d, ok := t.Data().([]float32)
	if !ok || len(d) != n || !t.IsNativelyAccessible() {
		return nil, fmt.Errorf("%s: want %d float32 values, got %v %v", what, n, t.Dtype(), t.Shape())
	}
	return d, nil
}

// convPoolOp is the forward op: (x n×c×h×w, w o×c×5×5) → n×o×h/2×w/2, or
// n×(o·h/2·w/2) when flat.
type convPoolOp struct {
	l    *convPool
	flat bool
	outT *tensor.Dense
}

func newConvPoolOp(l *convPool, flat bool) *convPoolOp {
	shape := []int{l.n, l.o, l.hp, l.wp}
	if flat {
		shape = []int{l.n, l.o * l.hp * l.wp}
	}
	return &convPoolOp{l: l, flat: flat, outT: tensor.New(tensor.WithShape(shape...), tensor.WithBacking(l.out))}
}

func (op *convPoolOp) Arity() int { return 2 }
func (op *convPoolOp) Type() hm.Type {
	return hm.NewFnType(tensorT(4), tensorT(4), tensorT(op.outT.Dims()))
}
func (op *convPoolOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.outT.Shape().Clone(), nil
}
func (op *convPoolOp) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 2 {
		return nil, fmt.Errorf("%v: %d inputs, want 2", op, len(vs))
	}
	l := op.l
	x, err := floats(vs[0], l.n*l.c*l.h*l.w, "conv input")
	if err != nil {
		return nil, err
	}
	w, err := floats(vs[1], l.o*l.c*convKK, "conv weights")
	if err != nil {
		return nil, err
	}
	l.forward(x, w)
	return op.outT, nil
}
func (op *convPoolOp) ReturnsPtr() bool      { return false }
func (op *convPoolOp) CallsExtern() bool     { return false }
func (op *convPoolOp) OverwritesInput() int  { return -1 }
func (op *convPoolOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%v@%p", op, op.l) }
func (op *convPoolOp) Hashcode() uint32      { return opHash(op) }
func (op *convPoolOp) String() string {
	return fmt.Sprintf("ConvReluPool(%dx%dx%dx%d, %d)", op.l.n, op.l.c, op.l.h, op.l.w, op.l.o)
}

func (op *convPoolOp) DiffWRT(int) []bool { return []bool{op.l.needDX, true} }
func (op *convPoolOp) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	if !op.l.train {
		return nil, fmt.Errorf("%v: built for evaluation, not differentiable", op)
	}
	dz, err := G.ApplyOp(newConvPoolScatter(op.l, op.outT.Dims()), grad)
	if err != nil {
		return nil, err
	}
	dw, err := G.ApplyOp(newConvPoolDW(op.l), dz)
	if err != nil {
		return nil, err
	}
	var dx *G.Node
	if op.l.needDX {
		if dx, err = G.ApplyOp(newConvPoolDX(op.l), inputs[1], dz); err != nil {
			return nil, err
		}
	}
	return G.Nodes{dx, dw}, nil
}

// convPoolScatter: gradient of the pooled output → gradient of the
// convolution output (o padded planes, see convPool), through the recorded
// winners.
type convPoolScatter struct {
	l        *convPool
	gradDims int
	outT     *tensor.Dense // over l.dzpad, built once: a step allocates nothing here
}

func newConvPoolScatter(l *convPool, gradDims int) *convPoolScatter {
	return &convPoolScatter{l: l, gradDims: gradDims, outT: tensor.New(tensor.WithShape(l.o, l.plane), tensor.WithBacking(l.dzpad))}
}

func (op *convPoolScatter) Arity() int    { return 1 }
func (op *convPoolScatter) Type() hm.Type { return hm.NewFnType(tensorT(op.gradDims), tensorT(2)) }
func (op *convPoolScatter) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{op.l.o, op.l.plane}, nil
}
func (op *convPoolScatter) Do(vs ...G.Value) (G.Value, error) {
	l := op.l
	if len(vs) != 1 {
		return nil, fmt.Errorf("%v: %d inputs, want 1", op, len(vs))
	}
	g, err := floats(vs[0], len(l.out), "pooled gradient")
	if err != nil {
		return nil, err
	}
	parallel(l.n, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			l.scatter(g, n)
		}
	})
	return op.outT, nil
}
func (op *convPoolScatter) ReturnsPtr() bool      { return false }
func (op *convPoolScatter) CallsExtern() bool     { return false }
func (op *convPoolScatter) OverwritesInput() int  { return -1 }
func (op *convPoolScatter) WriteHash(h hash.Hash) { fmt.Fprintf(h, "ConvPoolScatter@%p", op.l) }
func (op *convPoolScatter) Hashcode() uint32      { return opHash(op) }
func (op *convPoolScatter) String() string        { return "ConvPoolScatter" }

// convPoolDW: dz → gradient of the weights (o × c × 5 × 5).
type convPoolDW struct {
	l    *convPool
	outT *tensor.Dense
}

func newConvPoolDW(l *convPool) *convPoolDW {
	return &convPoolDW{l: l, outT: tensor.New(tensor.WithShape(l.o, l.c, convK, convK), tensor.WithBacking(l.dw))}
}

func (op *convPoolDW) Arity() int    { return 1 }
func (op *convPoolDW) Type() hm.Type { return hm.NewFnType(tensorT(2), tensorT(4)) }
func (op *convPoolDW) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.outT.Shape().Clone(), nil
}
func (op *convPoolDW) Do(vs ...G.Value) (G.Value, error) {
	if len(vs) != 1 {
		return nil, fmt.Errorf("%v: %d inputs, want 1", op, len(vs))
	}
	if _, err := floats(vs[0], len(op.l.dzpad), "conv output gradient"); err != nil {
		return nil, err
	}
	op.l.backwardW()
	return op.outT, nil
}
func (op *convPoolDW) ReturnsPtr() bool      { return false }
func (op *convPoolDW) CallsExtern() bool     { return false }
func (op *convPoolDW) OverwritesInput() int  { return -1 }
func (op *convPoolDW) WriteHash(h hash.Hash) { fmt.Fprintf(h, "ConvPoolDW@%p", op.l) }
func (op *convPoolDW) Hashcode() uint32      { return opHash(op) }
func (op *convPoolDW) String() string        { return "ConvPoolDW" }

// convPoolDX: (w, dz) → gradient of the input (n × c × h × w).
type convPoolDX struct {
	l    *convPool
	outT *tensor.Dense
}

func newConvPoolDX(l *convPool) *convPoolDX {
	return &convPoolDX{l: l, outT: tensor.New(tensor.WithShape(l.n, l.c, l.h, l.w), tensor.WithBacking(l.dx))}
}

func (op *convPoolDX) Arity() int    { return 2 }
func (op *convPoolDX) Type() hm.Type { return hm.NewFnType(tensorT(4), tensorT(2), tensorT(4)) }
func (op *convPoolDX) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return op.outT.Shape().Clone(), nil
}
func (op *convPoolDX) Do(vs ...G.Value) (G.Value, error) {
	l := op.l
	if len(vs) != 2 {
		return nil, fmt.Errorf("%v: %d inputs, want 2", op, len(vs))
	}
	w, err := floats(vs[0], l.o*l.c*convKK, "conv weights")
	if err != nil {
		return nil, err
	}
	if _, err := floats(vs[1], len(l.dzpad), "conv output gradient"); err != nil {
		return nil, err
	}
	l.backwardX(w)
	return op.outT, nil
}
func (op *convPoolDX) ReturnsPtr() bool      { return false }
func (op *convPoolDX) CallsExtern() bool     { return false }
func (op *convPoolDX) OverwritesInput() int  { return -1 }
func (op *convPoolDX) WriteHash(h hash.Hash) { fmt.Fprintf(h, "ConvPoolDX@%p", op.l) }
func (op *convPoolDX) Hashcode() uint32      { return opHash(op) }
func (op *convPoolDX) String() string        { return "ConvPoolDX" }

// convPoolNode applies a conv block to x (n × c × h × w) with weights w.
func convPoolNode(x, w *G.Node, train, needDX, flat bool) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 4 || len(ws) != 4 || ws[1] != xs[1] || ws[2] != convK || ws[3] != convK {
		return nil, fmt.Errorf("conv block: input %v, weights %v", xs, ws)
	}
	l, err := newConvPool(xs[0], xs[1], xs[2], xs[3], ws[0], train, needDX)
	if err != nil {
		return nil, err
	}
	return G.ApplyOp(newConvPoolOp(l, flat), x, w)
}
