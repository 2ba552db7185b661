package round

// sparseVec is a vector's nonzero coordinates in ascending order: what
// Colluding's dot products run over. A top-k update keeps k of n
// coordinates, so a pair's dot product costs O(k) instead of a pass over
// the model, and the pairwise search over a round's n updates
// n²·k instead of n²·model (BenchmarkColluding).
type sparseVec struct {
	idx []int32
	val []float32
}

func sparseOf(v []float32) sparseVec {
	var s sparseVec
	for i, x := range v {
		if x != 0 {
			s.idx = append(s.idx, int32(i))
			s.val = append(s.val, x)
		}
	}
	return s
}

// dot sums x·y over the coordinates both hold, in ascending order: the
// same products in the same order as a dense pass that skips zeros, so
// the same float64, bit for bit.
func (a sparseVec) dot(b sparseVec) float64 {
	var s float64
	i, j := 0, 0
	for i < len(a.idx) && j < len(b.idx) {
		switch {
		case a.idx[i] < b.idx[j]:
			i++
		case a.idx[i] > b.idx[j]:
			j++
		default:
			s += float64(a.val[i]) * float64(b.val[j])
			i++
			j++
		}
	}
	return s
}
