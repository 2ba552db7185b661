package gradient

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Aggregation rule names, as written in a swarm config.
const (
	Mean        = "mean"
	ClipMean    = "clip-mean"
	TrimmedMean = "trimmed-mean"
	Median      = "median"
)

// Update is one peer's decoded contribution to a round.
type Update struct {
	ID     string // the contributor's peer ID: fixes the order of arithmetic
	Vec    []float32
	Weight float64 // mean and clip-mean weights (e.g. sample counts); <= 0 counts as 1
}

// Result is an aggregate and what went into it.
type Result struct {
	Vec []float32
	// Used lists the IDs that were aggregated, in the order they were summed.
	Used []string
	// Excluded lists the IDs left out because their vectors held NaN or Inf.
	Excluded []string
	// ClipNorm is the median norm updates were clipped to (0 for mean).
	ClipNorm float64
}

// Aggregate combines updates with rule. Every peer that runs it on the same
// set of updates gets identical bits, whatever order they arrived in: the
// updates are sorted by ID, every sum runs in float64 in that order, and
// per-coordinate statistics sort values, not arrival. Updates with a NaN or
// infinite coordinate are excluded (and listed), never averaged in; a NaN or
// infinite weight is an error naming the update's ID (weights come from the
// caller, not from the wire, so it is a bug rather than an attack).
//
// Every rule but mean first scales each update down to the median L2 norm
// of the updates (never up), so one peer can never move the model far:
//
//   - mean: weighted mean, unclipped (for experiments; not robust).
//   - clip-mean: clipped, then the weighted mean: one peer moves the result
//     by at most median/len in norm.
//   - trimmed-mean: clipped, then per coordinate drop the floor(trim·n)
//     lowest and highest values and average the rest (unweighted).
//   - median: clipped, then the per coordinate median (mean of the middle
//     two for even n).
func Aggregate(rule string, updates []Update, trim float64) (Result, error) {
	ups := slices.Clone(updates)
	slices.SortFunc(ups, func(a, b Update) int { return cmp.Compare(a.ID, b.ID) })
	var res Result
	var ok []Update
	for i, u := range ups {
		if i > 0 && u.ID == ups[i-1].ID {
			return res, fmt.Errorf("aggregate: two updates from %s", u.ID)
		}
		if len(u.Vec) != len(ups[0].Vec) {
			return res, fmt.Errorf("aggregate: update from %s has %d elements, %s has %d", u.ID, len(u.Vec), ups[0].ID, len(ups[0].Vec))
		}
		if math.IsNaN(u.Weight) || math.IsInf(u.Weight, 0) {
			return res, fmt.Errorf("aggregate: update from %s has weight %v", u.ID, u.Weight)
		}
		if Finite(u.Vec) {
			ok = append(ok, u)
		} else {
			res.Excluded = append(res.Excluded, u.ID)
		}
	}
	if len(ok) == 0 {
		return res, fmt.Errorf("aggregate: no finite updates among %d", len(ups))
	}
	for _, u := range ok {
		res.Used = append(res.Used, u.ID)
	}
	n := len(ok[0].Vec)
	res.Vec = make([]float32, n)
	scale := make([]float64, len(ok))
	for i := range scale {
		scale[i] = 1
	}
	switch rule {
	case ClipMean, TrimmedMean, Median:
		norms := make([]float64, len(ok))
		for i, u := range ok {
			norms[i] = Norm(u.Vec)
		}
		res.ClipNorm = MedianOf(norms)
		for i, nm := range norms {
			if nm > res.ClipNorm {
				scale[i] = res.ClipNorm / nm
			}
		}
	}
	switch rule {
	case Mean, ClipMean:
		var wsum float64
		w := make([]float64, len(ok))
		for i, u := range ok {
			w[i] = u.Weight
			if w[i] <= 0 {
				w[i] = 1
			}
			wsum += w[i]
		}
		acc := make([]float64, n)
		for i, u := range ok {
			f := w[i] * scale[i] / wsum
			for j, x := range u.Vec {
				acc[j] += f * float64(x)
			}
		}
		for j, a := range acc {
			res.Vec[j] = float32(a)
		}
	case TrimmedMean, Median:
		if rule == TrimmedMean && (trim < 0 || trim >= 0.5) {
			return res, fmt.Errorf("aggregate: trim fraction must be in [0, 0.5), got %v", trim)
		}
		col := make([]float64, len(ok))
		cut := int(trim * float64(len(ok)))
		for j := 0; j < n; j++ {
			for i, u := range ok {
				col[i] = scale[i] * float64(u.Vec[j])
			}
			if rule == Median {
				res.Vec[j] = float32(medianInPlace(col))
				continue
			}
			slices.Sort(col)
			var s float64
			for _, x := range col[cut : len(col)-cut] {
				s += x
			}
			res.Vec[j] = float32(s / float64(len(col)-2*cut))
		}
	default:
		return res, fmt.Errorf("aggregate: unknown rule %q (want mean, clip-mean, trimmed-mean or median)", rule)
	}
	return res, nil
}

// Norm is the L2 norm of v, summed in float64 in index order.
func Norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// MedianOf is the median of x (the mean of the middle two for even
// length), without changing x. It is the one median every package uses.
func MedianOf(x []float64) float64 { return medianInPlace(slices.Clone(x)) }

// medianInPlace is MedianOf, sorting x: for the per-coordinate loop, which
// owns its column.
func medianInPlace(x []float64) float64 {
	slices.Sort(x)
	m := len(x) / 2
	if len(x)%2 == 1 {
		return x[m]
	}
	return (x[m-1] + x[m]) / 2
}

// Finite reports whether every value of v is neither NaN nor infinite.
func Finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}
