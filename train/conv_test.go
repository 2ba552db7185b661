package train

import (
	"math"
	"runtime"
	"testing"

	"github.com/swarmtrain/swarmtrain/train/data"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func randFloats(r interface{ NormFloat64() float64 }, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// convBlockGrads builds loss = sum(block(x, w) ∘ r) with either our fused op
// or gorgonia's Conv2d, Rectify and MaxPool2D, and returns the block's
// output and the gradients of the loss with respect to x and w.
func convBlockGrads(t *testing.T, fused bool, n, c, h, w, o int, xv, wv, rv []float32) (out, dx, dw []float32) {
	t.Helper()
	g := G.NewGraph()
	xt := tensor.New(tensor.WithShape(n, c, h, w), tensor.WithBacking(append([]float32(nil), xv...)))
	wt := tensor.New(tensor.WithShape(o, c, convK, convK), tensor.WithBacking(append([]float32(nil), wv...)))
	x := G.NewTensor(g, G.Float32, 4, G.WithShape(n, c, h, w), G.WithName("x"), G.WithValue(xt))
	wn := G.NewTensor(g, G.Float32, 4, G.WithShape(o, c, convK, convK), G.WithName("w"), G.WithValue(wt))
	var y *G.Node
	var err error
	if fused {
		y, err = convPoolNode(x, wn, true, true, false)
	} else {
		if y, err = G.Conv2d(x, wn, tensor.Shape{convK, convK}, []int{convPad, convPad}, []int{1, 1}, []int{1, 1}); err == nil {
			if y, err = G.Rectify(y); err == nil {
				y, err = G.MaxPool2D(y, tensor.Shape{2, 2}, []int{0, 0}, []int{2, 2})
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	rt := tensor.New(tensor.WithShape(n, o, h/2, w/2), tensor.WithBacking(rv))
	r := G.NewTensor(g, G.Float32, 4, G.WithShape(n, o, h/2, w/2), G.WithName("r"), G.WithValue(rt))
	prod, err := G.HadamardProd(y, r)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := G.Sum(prod)
	if err != nil {
		t.Fatal(err)
	}
	grads, err := G.Grad(loss, x, wn)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	cp := func(nd *G.Node) []float32 { return append([]float32(nil), nd.Value().Data().([]float32)...) }
	return cp(y), cp(grads[0]), cp(grads[1])
}

func maxRelErr(t *testing.T, what string, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var scale, worst float64
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	for i := range got {
		worst = math.Max(worst, math.Abs(float64(got[i])-float64(want[i]))/math.Max(scale, 1e-6))
	}
	return worst
}

// TestConvPoolMatchesGorgonia compares the fused conv block's output and
// gradients with gorgonia's own Conv2d + Rectify + MaxPool2D, on odd sizes
// and on the cnn's real ones: every value within 1e-4 of the largest.
func TestConvPoolMatchesGorgonia(t *testing.T) { withKernels(t, convPoolMatchesGorgonia) }

func convPoolMatchesGorgonia(t *testing.T) {
	r := data.Rand(11)
	for _, s := range []struct{ n, c, h, w, o int }{
		{3, 2, 8, 6, 3},
		{2, 1, 28, 28, 8},
		{4, 8, 14, 14, 16},
	} {
		xv := randFloats(r, s.n*s.c*s.h*s.w)
		wv := randFloats(r, s.o*s.c*convKK)
		rv := randFloats(r, s.n*s.o*s.h/2*s.w/2)
		out, dx, dw := convBlockGrads(t, true, s.n, s.c, s.h, s.w, s.o, xv, wv, rv)
		rOut, rdx, rdw := convBlockGrads(t, false, s.n, s.c, s.h, s.w, s.o, xv, wv, rv)
		for _, c := range []struct {
			what      string
			got, want []float32
		}{{"output", out, rOut}, {"dx", dx, rdx}, {"dw", dw, rdw}} {
			if e := maxRelErr(t, c.what, c.got, c.want); e > 1e-4 {
				t.Errorf("%+v: %s differs from gorgonia's by %.2g of its largest value", s, c.what, e)
			}
		}
	}
}

// TestConvPoolFiniteDifferences checks the fused block's gradients against
// central differences of the loss sum(block(x, w) ∘ r), in float64 from the
// float32 forward pass, on a few coordinates of x and w.
func TestConvPoolFiniteDifferences(t *testing.T) {
	const n, c, h, w, o = 2, 3, 6, 8, 4
	r := data.Rand(12)
	xv := randFloats(r, n*c*h*w)
	wv := randFloats(r, o*c*convKK)
	rv := randFloats(r, n*o*h/2*w/2)
	l, err := newConvPool(n, c, h, w, o, true, true)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		l.forward(xv, wv)
		var s float64
		for i, v := range l.out {
			s += float64(v) * float64(rv[i])
		}
		return s
	}
	loss()
	for n := 0; n < l.n; n++ {
		l.scatter(rv, n)
	}
	l.backwardW()
	l.backwardX(wv)
	dx, dw := append([]float32(nil), l.dx...), append([]float32(nil), l.dw...)
	check := func(what string, v []float32, g []float32) {
		for j := 0; j < 12; j++ {
			i := r.IntN(len(v))
			const eps = 1e-2
			orig := v[i]
			v[i] = orig + eps
			lp := loss()
			v[i] = orig - eps
			lm := loss()
			v[i] = orig
			fd := (lp - lm) / (2 * eps)
			if math.Abs(fd-float64(g[i])) > 1e-2*math.Max(1, math.Abs(fd)) {
				t.Errorf("%s[%d]: gradient %v, finite difference %v", what, i, g[i], fd)
			}
		}
	}
	check("x", xv, dx)
	check("w", wv, dw)
}

// withKernels runs f with the assembly kernels (where this CPU has them)
// and with the fallback that CPUs without AVX2 and FMA take (gorgonia's
// BLAS), naming each run.
func withKernels(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := haveKernel
	defer func() { haveKernel = saved }()
	for _, asm := range []bool{true, false} {
		if asm && !saved {
			continue
		}
		haveKernel = asm
		name := map[bool]string{true: "asm", false: "blas"}[asm]
		t.Run(name, f)
	}
}

// TestConvPoolEvalGroupsMatchTraining checks the evaluation block, which
// convolves the batch in groups of evalGroup samples (the last one short),
// against the training block over the whole batch: the same outputs.
func TestConvPoolEvalGroupsMatchTraining(t *testing.T) {
	const n, c, h, w, o = evalGroup + 7, 3, 8, 10, 5
	r := data.Rand(13)
	xv := randFloats(r, n*c*h*w)
	wv := randFloats(r, o*c*convKK)
	tr, err := newConvPool(n, c, h, w, o, true, true)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := newConvPool(n, c, h, w, o, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if ev.group != evalGroup {
		t.Fatalf("eval group %d, want %d", ev.group, evalGroup)
	}
	tr.forward(xv, wv)
	ev.forward(xv, wv)
	ev.forward(xv, wv) // a second pass must not see the first one's state
	if e := maxRelErr(t, "eval output", ev.out, tr.out); e > 1e-6 {
		t.Fatalf("eval output differs from training output by %.2g", e)
	}
}

// TestConvPoolIsDeterministic runs the block's forward and backward with 1
// and 2 cores: the outputs and gradients must be bit-identical.
func TestConvPoolIsDeterministic(t *testing.T) {
	const n, c, h, w, o = 16, 8, 14, 14, 16
	r := data.Rand(14)
	xv := randFloats(r, n*c*h*w)
	wv := randFloats(r, o*c*convKK)
	gv := randFloats(r, n*o*h/2*w/2)
	run := func(procs int) (out, dx, dw []float32) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		l, err := newConvPool(n, c, h, w, o, true, true)
		if err != nil {
			t.Fatal(err)
		}
		l.forward(xv, wv)
		parallel(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				l.scatter(gv, i)
			}
		})
		l.backwardW()
		l.backwardX(wv)
		return l.out, l.dx, l.dw
	}
	o1, x1, w1 := run(1)
	o2, x2, w2 := run(3)
	for _, c := range []struct {
		what string
		a, b []float32
	}{{"output", o1, o2}, {"dx", x1, x2}, {"dw", w1, w2}} {
		for i := range c.a {
			if math.Float32bits(c.a[i]) != math.Float32bits(c.b[i]) {
				t.Fatalf("%s[%d]: %v with 1 core, %v with 3", c.what, i, c.a[i], c.b[i])
			}
		}
	}
}
