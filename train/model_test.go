package train

import (
	"context"
	"math"
	"runtime"
	"testing"

	"github.com/swarmtrain/swarmtrain/internal/testdata"
	"github.com/swarmtrain/swarmtrain/train/data"
)

var testSpecs = []ModelSpec{
	{Kind: "mlp", Hidden: []int{32}},
	{Kind: "cnn", Channels: []int{4, 8}, Dense: 16},
}

// fixedBatch is a deterministic synthetic batch: tests of the model's
// mechanics must not depend on the dataset.
func fixedBatch(n int) ([]float32, []uint8) {
	r := data.Rand(7)
	x := make([]float32, n*28*28)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	y := make([]uint8, n)
	for i := range y {
		y[i] = uint8(r.IntN(10))
	}
	return x, y
}

func TestFlatViewRoundTripIsExact(t *testing.T) {
	for _, spec := range testSpecs {
		m, err := newC(spec, 8, 1)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, m.NumParams())
		r := data.Rand(3)
		for i := range want {
			want[i] = math.Float32frombits(r.Uint32()&0x3fffffff | 0x0) // any finite float32 bit pattern
		}
		if err := m.WriteParams(want); err != nil {
			t.Fatal(err)
		}
		got := m.Params()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: param %d: got %v want %v", spec.Kind, i, got[i], want[i])
			}
		}
		if err := m.WriteParams(want[1:]); err == nil {
			t.Fatalf("%s: SetParams with a short vector succeeded", spec.Kind)
		}
		m.Close()
	}
}

func TestWritesThroughFlatViewReachTheGraph(t *testing.T) {
	m, err := newC(testSpecs[0], 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x, y := fixedBatch(8)
	l1, _ := m.Grad(x, y)
	clear(m.Params()) // all-zero weights: logits 0, loss ln(10)
	l2, _ := m.Grad(x, y)
	if l1 == l2 || math.Abs(float64(l2)-math.Log(10)) > 1e-5 {
		t.Fatalf("zeroing the flat view did not reach the graph: loss %v then %v, want ln 10", l1, l2)
	}
}

func TestOneStepLowersLoss(t *testing.T) {
	for _, spec := range testSpecs {
		m, err := newC(spec, 16, 1)
		if err != nil {
			t.Fatal(err)
		}
		opt, _ := NewOptimizer(OptimizerSpec{Name: "sgd", LR: 0.01}, m.NumParams())
		x, y := fixedBatch(16)
		before, err := m.Grad(x, y)
		if err != nil {
			t.Fatal(err)
		}
		opt.Step(m.Params(), m.Grads())
		after, _ := m.Grad(x, y)
		if !(after < before) {
			t.Fatalf("%s: loss %v -> %v after one step", spec.Kind, before, after)
		}
		m.Close()
	}
}

// TestGradientsMatchFiniteDifferences checks the flat gradient against a
// central difference on a few coordinates of every model, and that repeated
// Grad calls overwrite rather than accumulate.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, spec := range testSpecs {
		m, err := newC(spec, 4, 2)
		if err != nil {
			t.Fatal(err)
		}
		x, y := fixedBatch(4)
		if _, err := m.Grad(x, y); err != nil {
			t.Fatal(err)
		}
		m.Grad(x, y) // a second call must give the same gradient, not twice it
		g := append([]float32(nil), m.Grads()...)
		p := m.Params()
		r := data.Rand(5)
		checked := 0
		for tries := 0; checked < 8 && tries < 200; tries++ {
			i := r.IntN(len(p))
			if math.Abs(float64(g[i])) < 1e-3 {
				continue // too small for a float32 difference to resolve
			}
			const h = 1e-2
			orig := p[i]
			p[i] = orig + h
			lp, _ := m.Grad(x, y)
			p[i] = orig - h
			lm, _ := m.Grad(x, y)
			p[i] = orig
			fd := (float64(lp) - float64(lm)) / (2 * h)
			if rel := math.Abs(fd-float64(g[i])) / math.Max(math.Abs(fd), 1e-3); rel > 0.05 {
				t.Errorf("%s: param %d: gradient %v, finite difference %v", spec.Kind, i, g[i], fd)
			}
			checked++
		}
		if checked < 8 {
			t.Errorf("%s: only %d coordinates had a resolvable gradient", spec.Kind, checked)
		}
		m.Close()
	}
}

func TestInitIsDeterministic(t *testing.T) {
	a, _ := newC(testSpecs[1], 4, 9)
	b, _ := newC(testSpecs[1], 8, 9)
	c, _ := newC(testSpecs[1], 4, 10)
	for i, v := range a.Params() {
		if v != b.Params()[i] {
			t.Fatalf("same seed, different init at %d", i)
		}
	}
	same := true
	for i, v := range a.Params() {
		same = same && v == c.Params()[i]
	}
	if same {
		t.Fatal("different seeds gave the same init")
	}
}

func TestBadSpecsAreErrors(t *testing.T) {
	for _, tc := range []struct {
		spec ModelSpec
		want string
	}{
		{ModelSpec{Kind: "rnn"}, `model.kind: unknown model "rnn" (want one of [cnn mlp transformer])`},
		{ModelSpec{Kind: "mlp"}, "model.hidden: an mlp needs at least one hidden layer"},
		{ModelSpec{Kind: "mlp", Hidden: []int{8, -1}}, "model.hidden[1]: must be > 0, got -1"},
		{ModelSpec{Kind: "cnn", Channels: []int{4}, Dense: 8}, "model.channels: a cnn needs exactly 2 convolution widths, got 1"},
	} {
		if _, err := newC(tc.spec, 4, 1); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: got %v, want %q", tc.spec, err, tc.want)
		}
	}
}

func TestOptimizerSpecErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		spec OptimizerSpec
		want string
	}{
		{OptimizerSpec{Name: "sgd", LR: -0.1}, "lr: must be > 0, got -0.1"},
		{OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 1, Beta2: 0.9, Eps: 1e-8}, "beta1: must be in [0, 1), got 1"},
		{OptimizerSpec{Name: "lion", LR: 1e-3}, `name: unknown optimizer "lion" (want sgd, momentum or adam)`},
	} {
		if _, err := NewOptimizer(tc.spec, 4); err == nil || err.Error() != tc.want {
			t.Errorf("%+v: got %v, want %q", tc.spec, err, tc.want)
		}
	}
}

// TestLocalLearnsMNIST runs a short stretch of real training: a few hundred
// MLP steps must take test accuracy far above chance.
func TestLocalLearnsMNIST(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newC(ModelSpec{Kind: "mlp", Hidden: []int{64}}, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opt, _ := NewOptimizer(OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
	shard := trainSet.Subset(data.Assign(1, "peer", trainSet.N, 8000))
	st, err := Local(context.Background(), m, opt, shard, 300, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Steps != 300 || st.Samples != 300*64 {
		t.Fatalf("stats %+v", st)
	}
	_, acc, err := m.Evaluate(testSet.Head(2000))
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.88 {
		t.Fatalf("accuracy %.3f after 300 steps, want >= 0.88", acc)
	}
	t.Logf("accuracy after 300 steps: %.4f (mean train loss %.3f)", acc, st.MeanLoss)
}

// TestLocalLearnsMNISTCNN is TestLocalLearnsMNIST for the cnn (its conv
// blocks are our own ops, see conv.go): 200 steps must reach 90 %.
func TestLocalLearnsMNISTCNN(t *testing.T) {
	trainSet, testSet, err := data.LoadMNIST(testdata.MNISTDir(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newC(ModelSpec{Kind: "cnn", Channels: []int{8, 16}, Dense: 128}, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	opt, _ := NewOptimizer(OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
	shard := trainSet.Subset(data.Assign(1, "peer", trainSet.N, 8000))
	st, err := Local(context.Background(), m, opt, shard, 200, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, acc, err := m.Evaluate(testSet.Head(2000))
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.90 {
		t.Fatalf("accuracy %.3f after 200 steps, want >= 0.90", acc)
	}
	t.Logf("accuracy after 200 steps: %.4f (mean train loss %.3f)", acc, st.MeanLoss)
}

// TestStepsAreBitIdenticalAcrossCores: the same steps with 1 core and with
// 3 give the same parameters to the bit (replays rely on it).
func TestStepsAreBitIdenticalAcrossCores(t *testing.T) {
	for _, spec := range []ModelSpec{{Kind: "mlp", Hidden: []int{256, 128}}, {Kind: "cnn", Channels: []int{8, 16}, Dense: 32}} {
		run := func(procs int) []float32 {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			m, err := newC(spec, 32, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			opt, _ := NewOptimizer(OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
			x, y := fixedBatch(32)
			for i := 0; i < 3; i++ {
				if _, err := m.Grad(x, y); err != nil {
					t.Fatal(err)
				}
				opt.Step(m.Params(), m.Grads())
			}
			return append([]float32(nil), m.Params()...)
		}
		a, b := run(1), run(3)
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s: parameter %d: %v with 1 core, %v with 3", spec.Kind, i, a[i], b[i])
			}
		}
	}
}

// newC builds a classifier for tests that step it by hand.
func newC(spec ModelSpec, batch int, seed uint64) (Classifier, error) {
	m, err := New(spec, batch, seed)
	if err != nil {
		return nil, err
	}
	return m.(Classifier), nil
}
