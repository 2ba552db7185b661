package round

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/swarmtrain/swarmtrain/gradient"
)

// colludingDense is Colluding as it was: every pair's cosine by a pass
// over the whole model. The reference the sparse search must equal.
func colludingDense(peers []string, vecs [][]float32) []string {
	dot := func(a, b []float32) float64 {
		var s float64
		for i, x := range a {
			if x != 0 && b[i] != 0 {
				s += float64(x) * float64(b[i])
			}
		}
		return s
	}
	norms := make([]float64, len(vecs))
	for i, v := range vecs {
		norms[i] = math.Sqrt(dot(v, v))
	}
	var out []string
	for i := range vecs {
		for j := range vecs {
			if i != j && norms[i] > 0 && norms[j] > 0 && dot(vecs[i], vecs[j])/(norms[i]*norms[j]) >= CollusionCosine {
				out = append(out, peers[i])
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// colludingRound is n top-k updates of a model of size elems at density
// 1 %: a third of them one direction with their own noise (sybils), the
// rest independent, decoded as tier 1 hands them to the audit draw.
func colludingRound(tb testing.TB, n, elems int, seed uint64) ([]string, [][]float32) {
	rng := rand.New(rand.NewPCG(seed, 1))
	codec, err := gradient.NewCodec(gradient.TopKInt8, 0.01)
	if err != nil {
		tb.Fatal(err)
	}
	shared := make([]float32, elems)
	for i := range shared {
		shared[i] = float32(rng.NormFloat64())
	}
	peers := make([]string, n)
	vecs := make([][]float32, n)
	for p := range n {
		v := make([]float32, elems)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
			if p%3 == 0 {
				v[i] = shared[i] + 0.3*v[i]
			}
		}
		b, err := gradient.Marshal(codec, v)
		if err != nil {
			tb.Fatal(err)
		}
		if vecs[p], _, err = gradient.Unmarshal(b, gradient.Limits{Elems: elems, MaxBytes: len(b)}); err != nil {
			tb.Fatal(err)
		}
		peers[p] = fmt.Sprintf("peer%03d", p)
	}
	return peers, vecs
}

// TestColludingSparseEqualsDense: the sparse search flags exactly the
// peers the pass over every pair did, and its dot products are the same
// float64 bit for bit; dense and empty updates included.
func TestColludingSparseEqualsDense(t *testing.T) {
	for seed := range uint64(4) {
		peers, vecs := colludingRound(t, 12, 5000, seed)
		vecs[1] = make([]float32, 5000) // an all-zero update
		for i := range vecs[2] {        // a dense one
			vecs[2][i] = float32(i%7) - 3
		}
		got, want := Colluding(peers, vecs), colludingDense(peers, vecs)
		if !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("seed %d: sparse flags %v, every pair %v", seed, got, want)
		}
		for i := range vecs {
			for j := range vecs {
				var d float64
				for k, x := range vecs[i] {
					if x != 0 && vecs[j][k] != 0 {
						d += float64(x) * float64(vecs[j][k])
					}
				}
				if s := sparseOf(vecs[i]).dot(sparseOf(vecs[j])); s != d {
					t.Fatalf("seed %d, pair %d,%d: sparse dot %v, dense %v", seed, i, j, s, d)
				}
			}
		}
	}
}

// BenchmarkColluding: the audit draw's collusion search over a round's
// updates (101,770 parameters, the demo MLP, at 1 %), every pair by a pass
// over the model against the sparse search, side by side.
func BenchmarkColluding(b *testing.B) {
	for _, n := range []int{16, 64, 128} {
		peers, vecs := colludingRound(b, n, 101770, 1)
		b.Run(fmt.Sprintf("peers=%d/every-pair", n), func(b *testing.B) {
			for b.Loop() {
				colludingDense(peers, vecs)
			}
		})
		b.Run(fmt.Sprintf("peers=%d/sparse", n), func(b *testing.B) {
			for b.Loop() {
				Colluding(peers, vecs)
			}
		})
	}
}
