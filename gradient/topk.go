package gradient

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// topK keeps the k = ceil(density·n) coordinates of largest magnitude (ties
// broken by lower index) and encodes them as a count, delta-varint indices
// and the values through a value codec.
type topK struct {
	name    string
	density float64
	vals    valueCodec
}

func (c *topK) Name() string { return c.name }

// K is how many coordinates a vector of n keeps.
func (c *topK) K(n int) int {
	k := int(c.density*float64(n) + 0.999999)
	return max(min(k, n), min(n, 1))
}

func (c *topK) Encode(dst []byte, v []float32) ([]byte, error) {
	idx, kept, bad := selectTopK(v, c.K(len(v)))
	if bad >= 0 {
		return nil, fmt.Errorf("encode: coordinate %d is %v", bad, v[bad])
	}
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	prev := -1
	for _, i := range idx {
		dst = binary.AppendUvarint(dst, uint64(int(i)-prev-1))
		prev = int(i)
	}
	return c.vals.put(dst, kept), nil
}

func (c *topK) Decode(dst []float32, b []byte) error {
	n := len(dst)
	k64, w := binary.Uvarint(b)
	if w <= 0 {
		return fmt.Errorf("%s: bad count", c.name)
	}
	// Every index takes at least one byte, so k is bounded by the bytes
	// present as well as by n: a hostile count cannot force a big allocation.
	if k64 > uint64(n) || k64 > uint64(len(b)) {
		return fmt.Errorf("%s: %d coordinates claimed for a vector of %d in %d bytes", c.name, k64, n, len(b))
	}
	k := int(k64)
	rest := b[w:]
	// First pass: validate the indices and find where the values begin.
	pos, prev := 0, -1
	for j := 0; j < k; j++ {
		gap, w := binary.Uvarint(rest[pos:])
		if w <= 0 {
			return fmt.Errorf("%s: index %d: truncated or overlong varint", c.name, j)
		}
		if gap >= uint64(n) || prev+1+int(gap) >= n {
			return fmt.Errorf("%s: index %d: out of range for a vector of %d", c.name, j, n)
		}
		prev += 1 + int(gap)
		pos += w
	}
	vals := make([]float32, k)
	tail, err := c.vals.get(vals, rest[pos:])
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	if len(tail) != 0 {
		return fmt.Errorf("%s: %d bytes after the values", c.name, len(tail))
	}
	clear(dst)
	prev = -1
	for j := 0; j < k; j++ {
		gap, w := binary.Uvarint(rest)
		rest = rest[w:]
		prev += 1 + int(gap)
		dst[prev] = vals[j]
	}
	return nil
}

// sampleSize is how many coordinates the threshold estimate looks at: the
// k·m/n-th largest of 16k evenly spaced samples estimates the k-th largest
// magnitude well enough that one pass collects ~1.3k candidates.
const sampleSize = 16384

// parallelMin is the vector length above which the candidate scan is split
// across cores; below it goroutines cost more than they save.
const parallelMin = 1 << 18

// SelectTopK returns, in ascending order, the indices of the k entries of v
// with the largest magnitude, ties going to the lower index. It never sorts
// the vector: it estimates a threshold from a strided sample (as Deep
// Gradient Compression does), collects the candidates at or above it in one
// pass, and picks exactly k of them by selection. When the sample
// misjudges and fewer than k pass, it lowers the threshold, and in the end
// falls back to an exact selection over all of v.
//
// v must be finite; Encode checks that in the same pass (see selectTopK).
func SelectTopK(v []float32, k int) []int32 {
	idx, _, _ := selectTopK(v, k)
	return idx
}

// selectTopK is SelectTopK that also returns the selected values and the
// index of a NaN or infinite entry (-1 if none), found during the candidate
// pass at no extra cost. Candidates carry their values from the scan, so no
// later step reads v at scattered positions (each such read is a cache miss
// on a large vector).
func selectTopK(v []float32, k int) ([]int32, []float32, int) {
	n := len(v)
	if k <= 0 || k >= n {
		if bad := firstNonFinite(v); bad >= 0 || k <= 0 {
			return nil, nil, bad
		}
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(i)
		}
		return out, slices.Clone(v), -1
	}
	thr := float32(0)
	if m := min(n, sampleSize); m < n {
		sample := make([]float32, m)
		for j := range sample {
			sample[j] = abs32(v[int(int64(j)*int64(n)/int64(m))])
		}
		// Aim for 1.3x the expected rank plus slack so one pass usually suffices.
		r := min(m-1, int(1.3*float64(k)*float64(m)/float64(n))+8)
		thr = nthLargest(sample, r)
	}
	for attempt := 0; ; attempt++ {
		cand, vals, bad := collect(v, thr, k)
		if bad >= 0 {
			return nil, nil, bad
		}
		if len(cand) >= k {
			idx, kept := pickExact(cand, vals, k)
			return idx, kept, -1
		}
		if attempt >= 2 || thr == 0 {
			break
		}
		thr /= 4
	}
	all := make([]int32, n)
	for i := range all {
		all[i] = int32(i)
	}
	idx, kept := pickExact(all, slices.Clone(v), k)
	return idx, kept, -1
}

// collect returns the ascending indices i with |v[i]| >= thr, scanning
// chunks in parallel and joining them in order, and the first index holding
// a NaN or infinity (-1 if none). It compares magnitudes as integers: for
// non-negative IEEE floats the bit patterns order like the values, and every
// pattern at or above 0x7f800000 is Inf or NaN.
func collect(v []float32, thr float32, k int) ([]int32, []float32, int) {
	workers := 1
	if len(v) >= parallelMin {
		workers = runtime.GOMAXPROCS(0)
	}
	parts := make([][]int32, workers)
	pvals := make([][]float32, workers)
	bads := make([]int, workers)
	chunk := (len(v) + workers - 1) / workers
	t := math.Float32bits(thr)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(v))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]int32, 0, 3*k/(2*workers)+16)
			vals := make([]float32, 0, cap(out))
			bad := -1
			for i, x := range v[lo:hi] {
				a := math.Float32bits(x) &^ (1 << 31)
				if a >= t {
					if a >= 0x7f800000 && bad < 0 {
						bad = lo + i
					}
					out = append(out, int32(lo+i))
					vals = append(vals, x)
				}
			}
			parts[w], pvals[w], bads[w] = out, vals, bad
		}()
	}
	wg.Wait()
	for _, b := range bads {
		if b >= 0 {
			return nil, nil, b
		}
	}
	return slices.Concat(parts...), slices.Concat(pvals...), -1
}

// firstNonFinite returns the index of the first NaN or infinity in v, or -1.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.Float32bits(x)&^(1<<31) >= 0x7f800000 {
			return i
		}
	}
	return -1
}

// pickExact keeps exactly k of the ascending candidate indices (vals holds
// their values): every one whose magnitude exceeds the k-th largest, then
// those equal to it in index order. The result stays ascending without a
// sort.
func pickExact(cand []int32, vals []float32, k int) ([]int32, []float32) {
	if len(cand) == k {
		return cand, vals
	}
	mags := make([]float32, len(vals))
	above := 0
	for j, x := range vals {
		mags[j] = abs32(x)
	}
	t := nthLargest(mags, k-1)
	for _, x := range vals {
		if abs32(x) > t {
			above++
		}
	}
	ties := k - above
	out, kept := cand[:0], vals[:0]
	for j, i := range cand {
		x := vals[j]
		a := abs32(x)
		if a > t || (a == t && ties > 0) {
			if a == t {
				ties--
			}
			out, kept = append(out, i), append(kept, x)
		}
	}
	return out, kept
}

// nthLargest returns the element that would sit at index r (0-based) if x
// were sorted in descending order. It reorders x (Hoare quickselect with a
// median-of-three pivot).
func nthLargest(x []float32, r int) float32 {
	lo, hi := 0, len(x)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		// median of three to the middle
		if x[mid] > x[lo] {
			x[mid], x[lo] = x[lo], x[mid]
		}
		if x[hi] > x[lo] {
			x[hi], x[lo] = x[lo], x[hi]
		}
		if x[mid] < x[hi] {
			x[mid], x[hi] = x[hi], x[mid]
		}
		p := x[mid]
		i, j := lo, hi
		for i <= j {
			for x[i] > p {
				i++
			}
			for x[j] < p {
				j--
			}
			if i <= j {
				x[i], x[j] = x[j], x[i]
				i++
				j--
			}
		}
		switch {
		case r <= j:
			hi = j
		case r >= i:
			lo = i
		default:
			return x[r]
		}
	}
	return x[r]
}
