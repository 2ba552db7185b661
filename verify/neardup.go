package verify

import (
	"cmp"
	"math"
	"slices"
)

// nearDuplicates finds, for each vector in order, the first earlier kept
// vector whose Similarity to it is at least t; a vector with none is kept.
// nil vectors are not standing (already rejected) and neither match nor
// are matched. of[i] is the index matched (-1: kept) and sims[i] the
// similarity.
//
// The verdicts are exactly those of comparing every pair in order (what
// nearDuplicatesPairwise, the tests' reference, does), without comparing
// every pair: that cost n²/2 passes over the whole model and was most of
// a 64-peer seal. Sparse updates (top-k: fewer than half their values set)
// are compared by the Jaccard similarity of their supports, and a pair
// with J >= t must share a token of their prefixes (PPJoin's prefix
// filter, Xiao et al. 2008: the |x| - ceil(t|x|) + 1 first indices of each
// support in one global order). The order is rarest first across the
// round, so common coordinates — those every honest update sets — sit at
// the ends of the supports and rarely make two updates candidates. Only
// candidates are compared, in index order, so the first match is the same
// one the pairwise loop finds. Dense updates are compared with every kept
// update, as before.
func nearDuplicates(vecs [][]float32, t float64) (of []int, sims []float64) {
	of, sims = make([]int, len(vecs)), make([]float64, len(vecs))
	supports := make([][]int32, len(vecs)) // nil: dense or not standing
	var freq []int32                       // per coordinate: how many sparse updates set it
	for i, v := range vecs {
		of[i] = -1
		if v == nil {
			continue
		}
		if nz := nonzero(v); 2*nz < len(v) {
			s := make([]int32, 0, nz)
			for k, x := range v {
				if x != 0 {
					s = append(s, int32(k))
				}
			}
			supports[i] = s
			if freq == nil {
				freq = make([]int32, len(v))
			}
			for _, k := range s {
				freq[k]++
			}
		}
	}
	// rarest first, then by index: a fixed order for the round.
	byRarity := func(a, b int32) int { return cmp.Or(cmp.Compare(freq[a], freq[b]), cmp.Compare(a, b)) }
	index := map[int32][]int{} // prefix token -> kept sparse vectors
	var keptDense []int
	seen := make([]int, len(vecs)) // seen[j] == i+1: j is already a candidate of i
	for i, v := range vecs {
		if v == nil {
			continue
		}
		var cands []int
		var prefix []int32
		if s := supports[i]; s != nil {
			prefix = slices.SortedFunc(slices.Values(s), byRarity)
			// One token more than the lemma needs: ceil(t*|x|) in floating
			// point may come out one high, and a longer prefix only adds
			// candidates.
			prefix = prefix[:min(len(prefix), len(prefix)-int(math.Ceil(t*float64(len(prefix))))+2)]
			for _, k := range prefix {
				for _, j := range index[k] {
					if seen[j] != i+1 {
						seen[j] = i + 1
						cands = append(cands, j)
					}
				}
			}
			cands = append(cands, keptDense...)
		} else {
			// A dense update is compared with every kept one.
			for j := range i {
				if vecs[j] != nil && of[j] < 0 {
					cands = append(cands, j)
				}
			}
		}
		slices.Sort(cands)
		for _, j := range cands {
			var sim float64
			if supports[i] != nil && supports[j] != nil {
				sim = jaccard(supports[j], supports[i])
			} else {
				sim = Similarity(vecs[j], v)
			}
			if sim >= t {
				of[i], sims[i] = j, sim
				break
			}
		}
		if of[i] >= 0 {
			continue
		}
		if prefix != nil {
			for _, k := range prefix {
				index[k] = append(index[k], i)
			}
		} else {
			keptDense = append(keptDense, i)
		}
	}
	return of, sims
}

// jaccard is Similarity's sparse case on two ascending supports: the same
// counts, so the same float64.
func jaccard(a, b []int32) float64 {
	if len(a)+len(b) == 0 {
		return 1
	}
	both := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			both++
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return float64(both) / float64(len(a)+len(b)-both)
}
