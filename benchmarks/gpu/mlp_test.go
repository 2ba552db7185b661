package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// An MLP small enough to write out by hand and large enough to be a real
// step: x (B×In) · w1 (In×H) → relu → · w2 (H×Out), mean squared error
// against t. The shapes are MNIST's with one hidden layer of 256.
type shape struct{ B, In, H, Out int }

var mnistShape = shape{B: 64, In: 784, H: 256, Out: 10}

// problem is one batch and one set of weights, drawn from a fixed seed.
type problem struct {
	s      shape
	x, t   []float32 // B×In, B×Out, row-major
	w1, w2 []float32 // In×H, H×Out
}

func newProblem(s shape, seed uint64) problem {
	r := rand.New(rand.NewPCG(seed, 17))
	fill := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	p := problem{s: s,
		x:  fill(s.B*s.In, 1),
		w1: fill(s.In*s.H, math.Sqrt(2/float64(s.In))),
		w2: fill(s.H*s.Out, math.Sqrt(1/float64(s.H))),
		t:  make([]float32, s.B*s.Out),
	}
	for i := 0; i < s.B; i++ { // one-hot targets
		p.t[i*s.Out+r.IntN(s.Out)] = 1
	}
	return p
}

// reference computes the loss and both gradients in float64, written out.
func (p problem) reference() (loss float64, g1, g2 []float64) {
	s := p.s
	a := make([]float64, s.B*s.H)
	for i := 0; i < s.B; i++ {
		for k := 0; k < s.In; k++ {
			xv := float64(p.x[i*s.In+k])
			for j := 0; j < s.H; j++ {
				a[i*s.H+j] += xv * float64(p.w1[k*s.H+j])
			}
		}
	}
	h := make([]float64, len(a))
	for i, v := range a {
		h[i] = math.Max(v, 0)
	}
	n := float64(s.B * s.Out)
	do := make([]float64, s.B*s.Out)
	for i := 0; i < s.B; i++ {
		for j := 0; j < s.Out; j++ {
			var o float64
			for k := 0; k < s.H; k++ {
				o += h[i*s.H+k] * float64(p.w2[k*s.Out+j])
			}
			d := o - float64(p.t[i*s.Out+j])
			loss += d * d / n
			do[i*s.Out+j] = 2 * d / n
		}
	}
	g2 = make([]float64, s.H*s.Out)
	dh := make([]float64, s.B*s.H)
	for i := 0; i < s.B; i++ {
		for k := 0; k < s.H; k++ {
			for j := 0; j < s.Out; j++ {
				g2[k*s.Out+j] += h[i*s.H+k] * do[i*s.Out+j]
				dh[i*s.H+k] += do[i*s.Out+j] * float64(p.w2[k*s.Out+j])
			}
			if a[i*s.H+k] < 0 { // gorgonia's relu is x * (x >= 0)
				dh[i*s.H+k] = 0
			}
		}
	}
	g1 = make([]float64, s.In*s.H)
	for i := 0; i < s.B; i++ {
		for k := 0; k < s.In; k++ {
			xv := float64(p.x[i*s.In+k])
			for j := 0; j < s.H; j++ {
				g1[k*s.H+j] += xv * dh[i*s.H+j]
			}
		}
	}
	return loss, g1, g2
}

// mlp is the problem as a gorgonia graph on a tape machine: on the GPU in a
// -tags cuda build (every op with a CUDA kernel runs there), on the CPU
// otherwise.
type mlp struct {
	g                  *G.ExprGraph
	x, t, w1, w2, loss *G.Node
	lossVal            G.Value
	vm                 G.VM
	ext                G.External
	solver             G.Solver
}

func newMLP(p problem, learnRate float64) (*mlp, error) {
	s := p.s
	g := G.NewGraph()
	mat := func(name string, r, c int, v []float32) *G.Node {
		back := append([]float32(nil), v...)
		return G.NewMatrix(g, G.Float32, G.WithShape(r, c), G.WithName(name),
			G.WithValue(tensor.New(tensor.WithShape(r, c), tensor.WithBacking(back))))
	}
	m := &mlp{g: g,
		x: mat("x", s.B, s.In, p.x), t: mat("t", s.B, s.Out, p.t),
		w1: mat("w1", s.In, s.H, p.w1), w2: mat("w2", s.H, s.Out, p.w2),
	}
	a, err := G.Mul(m.x, m.w1)
	if err != nil {
		return nil, err
	}
	h, err := G.Rectify(a)
	if err != nil {
		return nil, err
	}
	o, err := G.Mul(h, m.w2)
	if err != nil {
		return nil, err
	}
	d, err := G.Sub(o, m.t)
	if err != nil {
		return nil, err
	}
	sq, err := G.Square(d)
	if err != nil {
		return nil, err
	}
	if m.loss, err = G.Mean(sq); err != nil {
		return nil, err
	}
	G.Read(m.loss, &m.lossVal)
	if _, err = G.Grad(m.loss, m.w1, m.w2); err != nil {
		return nil, err
	}
	tm := G.NewTapeMachine(g, G.BindDualValues(m.w1, m.w2))
	m.vm, m.ext = tm, tm
	m.solver = G.NewVanillaSolver(G.WithLearnRate(learnRate))
	return m, nil
}

// step runs forward and backward once; with update it also applies the SGD
// step to w1 and w2.
func (m *mlp) step(update bool) (float64, error) {
	if err := m.vm.RunAll(); err != nil {
		return 0, err
	}
	defer m.vm.Reset()
	loss, ok := m.lossVal.Data().(float32)
	if !ok {
		return 0, fmt.Errorf("loss is %T, want float32", m.lossVal.Data())
	}
	if update {
		if err := m.solver.Step(G.NodesToValueGrads(G.Nodes{m.w1, m.w2})); err != nil {
			return 0, err
		}
	}
	return float64(loss), nil
}

// grads copies both gradients to the host.
func (m *mlp) grads() (g1, g2 []float32, err error) {
	for i, n := range []*G.Node{m.w1, m.w2} {
		v, _, err := n.GradOnDevice(G.CPU, m.ext)
		if err != nil {
			return nil, nil, fmt.Errorf("gradient of %v: %w", n.Name(), err)
		}
		data, ok := v.Data().([]float32)
		if !ok {
			return nil, nil, fmt.Errorf("gradient of %v is %T, want []float32", n.Name(), v.Data())
		}
		data = append([]float32(nil), data...)
		if i == 0 {
			g1 = data
		} else {
			g2 = data
		}
	}
	return g1, g2, nil
}

func (m *mlp) close() { m.vm.Close() }

// relErr is max |got - want| over max |want|: one figure per tensor that does
// not blow up where an entry of want is near zero.
func relErr(got []float32, want []float64) float64 {
	var diff, scale float64
	for i, w := range want {
		diff = math.Max(diff, math.Abs(float64(got[i])-w))
		scale = math.Max(scale, math.Abs(w))
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// TestMLPStepMatchesReference: one forward and backward through gorgonia
// (float32, on the GPU with -tags cuda) agrees with the float64 reference
// within 1e-4 relative error, the bar for CUDA against CPU steps.
func TestMLPStepMatchesReference(t *testing.T) {
	p := newProblem(mnistShape, 1)
	wantLoss, want1, want2 := p.reference()
	m, err := newMLP(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	loss, err := m.step(false)
	if err != nil {
		t.Fatalf("step (cuda build %v): %+v", CUDABuild, err)
	}
	g1, g2, err := m.grads()
	if err != nil {
		t.Fatal(err)
	}
	lossErr := math.Abs(loss-wantLoss) / wantLoss
	e1, e2 := relErr(g1, want1), relErr(g2, want2)
	t.Logf("cuda build %v: loss %.7f (reference %.7f, rel err %.2e), grad w1 rel err %.2e, grad w2 rel err %.2e",
		CUDABuild, loss, wantLoss, lossErr, e1, e2)
	const tol = 1e-4
	if lossErr > tol || e1 > tol || e2 > tol {
		t.Fatalf("cuda build %v: relative errors loss %.2e, w1 %.2e, w2 %.2e; want all <= %.0e", CUDABuild, lossErr, e1, e2, tol)
	}
}

// TestMLPTrains: 200 SGD steps on one fixed batch lower the loss; the log
// line is what scripts/gpu/run.sh puts beside the CPU binary's.
func TestMLPTrains(t *testing.T) {
	steps := 200
	if testing.Short() && !CUDABuild {
		steps = 20
	}
	p := newProblem(mnistShape, 2)
	m, err := newMLP(p, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	var first, last float64
	start := time.Now()
	for i := 0; i < steps; i++ {
		if last, err = m.step(true); err != nil {
			t.Fatalf("step %d (cuda build %v): %+v", i, CUDABuild, err)
		}
		if i == 0 {
			first = last
		}
	}
	t.Logf("cuda build %v: %d SGD steps in %v: loss %.4g -> %.4g", CUDABuild, steps, time.Since(start).Round(time.Millisecond), first, last)
	if !(last < 0.8*first) {
		t.Fatalf("cuda build %v: loss %.6f after %d steps, started at %.6f: want at least 20%% lower", CUDABuild, last, steps, first)
	}
}

// BenchmarkMLPStep times forward + backward + SGD update at batch 64 and 512;
// run the binary with and without -tags cuda for the two columns.
func BenchmarkMLPStep(b *testing.B) {
	for _, batch := range []int{64, 512} {
		s := mnistShape
		s.B = batch
		b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
			m, err := newMLP(newProblem(s, 3), 0.01)
			if err != nil {
				b.Fatal(err)
			}
			defer m.close()
			if _, err := m.step(true); err != nil { // warm-up: allocations, kernel loading
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.step(true); err != nil {
					b.Fatal(err)
				}
			}
			perStep := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(perStep*1e3, "ms/step")
			b.ReportMetric(float64(batch)/perStep, "samples/s")
		})
	}
}
