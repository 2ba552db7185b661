package verify

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// nearDuplicatesPairwise is the definition nearDuplicates must match:
// every standing vector against every earlier kept one, in order.
func nearDuplicatesPairwise(vecs [][]float32, t float64) ([]int, []float64) {
	of, sims := make([]int, len(vecs)), make([]float64, len(vecs))
	var kept []int
	for i, v := range vecs {
		of[i] = -1
		if v == nil {
			continue
		}
		for _, j := range kept {
			if sim := Similarity(vecs[j], v); sim >= t {
				of[i], sims[i] = j, sim
				break
			}
		}
		if of[i] < 0 {
			kept = append(kept, i)
		}
	}
	return of, sims
}

// roundOfUpdates makes n updates of elems values like a round's: top-k
// supports that share a common core (the coordinates every honest update
// sets), copies changed in a few places at overlaps around the threshold,
// some dense updates (a dense codec, or a copier that densified) and some
// not standing.
func roundOfUpdates(r *rand.Rand, n, elems, k int) [][]float32 {
	core := r.Perm(elems)[:k/2]
	vecs := make([][]float32, n)
	for i := range vecs {
		switch x := r.IntN(10); {
		case x == 0:
			continue // rejected earlier
		case x == 1:
			v := make([]float32, elems)
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
			if i > 0 && vecs[i-1] != nil && r.IntN(2) == 0 {
				copy(v, vecs[i-1]) // dense copy of a sparse one
				v[r.IntN(elems)] += 1
			}
			vecs[i] = v
		case x <= 4 && i > 0:
			// A copy of an earlier update with a share of its support moved.
			src := vecs[r.IntN(i)]
			if src == nil {
				continue
			}
			v := slices.Clone(src)
			moved := r.IntN(k/5 + 1)
			for range moved {
				nz := slices.IndexFunc(v[r.IntN(elems):], func(f float32) bool { return f != 0 })
				if nz >= 0 {
					for j := range v {
						if v[j] != 0 && r.IntN(k) == 0 {
							v[j] = 0
							v[r.IntN(elems)] = 1
							break
						}
					}
				}
			}
			vecs[i] = v
		default:
			v := make([]float32, elems)
			for _, j := range core {
				v[j] = float32(r.NormFloat64()) + 0.1
			}
			for _, j := range r.Perm(elems)[:k-len(core)] {
				v[j] = float32(r.NormFloat64()) + 0.1
			}
			vecs[i] = v
		}
	}
	return vecs
}

// TestNearDuplicatesMatchPairwise: the prefix-filtered search gives the
// pairwise loop's verdicts, matches and similarities exactly, on rounds
// with near copies at and around the threshold.
func TestNearDuplicatesMatchPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	found, trials := 0, 300
	if testing.Short() {
		trials = 100
	}
	for trial := range trials {
		n, elems := 2+r.IntN(40), 200+r.IntN(2000)
		k := 1 + r.IntN(elems/4)
		vecs := roundOfUpdates(r, n, elems, k)
		thr := []float64{0.9, 0.5, 0.99, 1, 0.1}[trial%5]
		wantOf, wantSims := nearDuplicatesPairwise(vecs, thr)
		gotOf, gotSims := nearDuplicates(vecs, thr)
		if !slices.Equal(gotOf, wantOf) || !slices.Equal(gotSims, wantSims) {
			t.Fatalf("trial %d (n %d, elems %d, k %d, t %v):\n got %v %v\nwant %v %v", trial, n, elems, k, thr, gotOf, gotSims, wantOf, wantSims)
		}
		for _, j := range gotOf {
			if j >= 0 {
				found++
			}
		}
	}
	if found < trials/3 {
		t.Fatalf("only %d near duplicates in all trials: the test rounds do not exercise the search", found)
	}
}

// BenchmarkNearDuplicates: 64 honest top-k updates of 101,770 values at
// 1 % density, side by side with the pairwise loop.
func BenchmarkNearDuplicates(b *testing.B) {
	for _, n := range []int{16, 64, 128} {
		r := rand.New(rand.NewPCG(1, 2))
		const elems, k = 101770, 1017
		core := r.Perm(elems)[:k/2]
		vecs := make([][]float32, n)
		for i := range vecs {
			v := make([]float32, elems)
			for _, j := range core {
				v[j] = 1
			}
			for _, j := range r.Perm(elems)[:k/2] {
				v[j] = 1
			}
			vecs[i] = v
		}
		b.Run(fmt.Sprintf("pairwise/peers=%d", n), func(b *testing.B) {
			for b.Loop() {
				nearDuplicatesPairwise(vecs, 0.9)
			}
		})
		b.Run(fmt.Sprintf("prefix/peers=%d", n), func(b *testing.B) {
			for b.Loop() {
				nearDuplicates(vecs, 0.9)
			}
		})
	}
}
