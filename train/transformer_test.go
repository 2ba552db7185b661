package train

import (
	"context"
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/swarmtrain/swarmtrain/train/data"
)

var tinyTF = ModelSpec{Kind: "transformer", Layers: 2, Width: 8, Heads: 2, Context: 5, Classes: 7}

func tokenBatch(spec ModelSpec, batch int, seed uint64) *Batch {
	r := data.Rand(seed)
	t := make([]uint8, batch*(spec.Context+1))
	for i := range t {
		t[i] = uint8(r.IntN(spec.Classes))
	}
	return &Batch{Tokens: t}
}

// TestTransformerGradientsMatchFiniteDifferences checks the hand-written
// backward pass against central differences of the loss, in float64 around
// float32 parameters, for a sample of every tensor.
func TestTransformerGradientsMatchFiniteDifferences(t *testing.T) {
	mm, err := New(tinyTF, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*transformer)
	// Non-trivial norms and biases, so their gradients are checked too.
	r := data.Rand(5)
	for i := range m.params {
		m.params[i] += float32(r.NormFloat64() * 0.3)
	}
	b := tokenBatch(tinyTF, 3, 2)
	if _, err := m.Step(b); err != nil {
		t.Fatal(err)
	}
	grad := append([]float32(nil), m.grads...)
	loss := func() float64 { l, _ := m.forward(b.Tokens, m.B, false); return l }
	layout, _ := Layout(tinyTF)
	off := 0
	const eps = 3e-3
	checked := 0
	for _, tn := range layout {
		n := size(tn.Shape)
		for k := 0; k < 8; k++ {
			i := off + r.IntN(n)
			old := m.params[i]
			m.params[i] = old + eps
			lp := loss()
			m.params[i] = old - eps
			lm := loss()
			m.params[i] = old
			fd := (lp - lm) / (2 * eps)
			g := float64(grad[i])
			if math.Abs(fd-g) > 2e-4+0.02*math.Abs(fd) {
				t.Errorf("%s[%d]: backward %.6g, finite difference %.6g", tn.Name, i-off, g, fd)
			}
			checked++
		}
		off += n
	}
	t.Logf("%d gradients checked over %d tensors", checked, len(layout))
}

// TestTransformerStepsAreBitIdenticalAcrossCores: recomputation audits
// replay local work bit for bit, on any core count.
func TestTransformerStepsAreBitIdenticalAcrossCores(t *testing.T) {
	spec := ModelSpec{Kind: "transformer", Layers: 2, Width: 32, Heads: 4, Context: 16, Classes: 20}
	run := func(procs int) []float32 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		m, err := New(spec, 8, 3)
		if err != nil {
			t.Fatal(err)
		}
		opt, _ := NewOptimizer(OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
		hm := m.(HostModel)
		for i := 0; i < 3; i++ {
			if _, err := hm.Step(tokenBatch(spec, 8, uint64(i))); err != nil {
				t.Fatal(err)
			}
			opt.Step(hm.Params(), hm.Grads())
		}
		return Snapshot(m)
	}
	a, b := run(1), run(3)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("parameter %d: %v with 1 core, %v with 3", i, a[i], b[i])
		}
	}
}

// TestTransformerLearnsARepeatingText: a few hundred steps on a periodic
// text must drive the loss far below the uniform ln(V), and generation from
// its start must continue it.
func TestTransformerLearnsARepeatingText(t *testing.T) {
	const text = "the quick brown fox jumps over the lazy dog. "
	vocab := []rune{data.Unknown}
	seen := map[rune]bool{}
	for _, c := range text {
		if !seen[c] {
			seen[c] = true
			vocab = append(vocab, c)
		}
	}
	slices.Sort(vocab[1:])
	var long string
	for len(long) < 4000 {
		long += text
	}
	tok := data.Encode(vocab, long)
	spec := ModelSpec{Kind: "transformer", Layers: 1, Width: 32, Heads: 2, Context: 16, Classes: len(vocab)}
	set := &data.Set{Tokens: tok, Context: 16, Stride: 16, N: (len(tok) - 1) / 16, Classes: len(vocab), Vocab: vocab}
	m, err := New(spec, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	opt, _ := NewOptimizer(OptimizerSpec{Name: "adam", LR: 3e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
	if _, err := Local(context.Background(), m, opt, set, 300, 1); err != nil {
		t.Fatal(err)
	}
	loss, acc, err := m.Evaluate(set)
	if err != nil {
		t.Fatal(err)
	}
	if loss > 0.5 {
		t.Fatalf("loss %.3f (accuracy %.3f) after 300 steps on a periodic text, want < 0.5 (uniform is %.2f)", loss, acc, math.Log(float64(len(vocab))))
	}
	out, err := Generate(m.(LanguageModel), vocab, "the quick ", 20, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if out != "brown fox jumps over" {
		t.Errorf("generated %q, want %q", out, "brown fox jumps over")
	}
}

// TestHugeModelsAreRefused: a manifest's model comes from the network; an
// absurd one is an error, not an allocation that kills the peer.
func TestHugeModelsAreRefused(t *testing.T) {
	for _, s := range []ModelSpec{
		{Kind: "transformer", Layers: 4, Width: 128, Heads: 4, Context: 1 << 14, Classes: 86},
		{Kind: "transformer", Layers: 256, Width: 1 << 14, Heads: 4, Context: 64, Classes: 86},
		{Kind: "mlp", Hidden: []int{1 << 20, 1 << 20}},
	} {
		if _, err := New(s, 64, 1); err == nil {
			t.Errorf("%+v: built", s)
		}
	}
}
