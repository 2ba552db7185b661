package gradient

import "math"

// ErrorFeedback carries what compression drops into the next round, so that
// nothing is lost, only delayed: it compresses delta+e and keeps
// e = (delta+e) - decode(payload). With momentum correction (Deep Gradient
// Compression), it first folds delta into a momentum buffer u = m·u + delta
// and compresses u+e instead, and clears the momentum where coordinates
// were sent, so stale momentum does not push them twice.
type ErrorFeedback struct {
	residual []float32
	momentum []float32
	mu       float32
	acc      []float32
	decoded  []float32
}

// NewErrorFeedback returns error feedback for vectors of n elements;
// momentum in [0, 1) enables DGC momentum correction (0 disables it).
func NewErrorFeedback(n int, momentum float64) *ErrorFeedback {
	e := &ErrorFeedback{residual: make([]float32, n), acc: make([]float32, n), decoded: make([]float32, n), mu: float32(momentum)}
	if momentum > 0 {
		e.momentum = make([]float32, n)
	}
	return e
}

// Residual is what has been dropped so far and not yet sent.
func (e *ErrorFeedback) Residual() []float32 { return e.residual }

// Compress encodes delta plus the carried residual with c, as a wire message,
// and updates the residual.
func (e *ErrorFeedback) Compress(c Codec, delta []float32) ([]byte, error) {
	src := delta
	if e.momentum != nil {
		for i, d := range delta {
			e.momentum[i] = e.mu*e.momentum[i] + d
		}
		src = e.momentum
	}
	for i, d := range src {
		e.acc[i] = d + e.residual[i]
	}
	msg, err := Marshal(c, e.acc)
	if err != nil {
		return nil, err
	}
	if _, err := UnmarshalInto(e.decoded, msg, Limits{MaxBytes: len(msg)}); err != nil {
		return nil, err
	}
	for i, a := range e.acc {
		e.residual[i] = a - e.decoded[i]
		if e.momentum != nil && e.decoded[i] != 0 {
			e.momentum[i] = 0
		}
	}
	return msg, nil
}

// CompressWhole is error feedback for a sender that already carries its
// residual in its state: the contributor started its local work from the
// global model minus the residual, so delta (global model minus where it
// ended) already includes what was dropped before. It encodes delta as it
// is and keeps residual = delta - decode(payload). Adding the residual again,
// as Compress does, would count the dropped part twice when local work
// restarts from the global model every round and re-learns it.
func (e *ErrorFeedback) CompressWhole(c Codec, delta []float32) ([]byte, error) {
	msg, err := Marshal(c, delta)
	if err != nil {
		return nil, err
	}
	if _, err := UnmarshalInto(e.decoded, msg, Limits{MaxBytes: len(msg)}); err != nil {
		return nil, err
	}
	for i, d := range delta {
		e.residual[i] = d - e.decoded[i]
	}
	return msg, nil
}

// DensityWarmup is DGC's warm-up of the density: start at round 0, falling
// exponentially to final at round rounds and staying there, so early rounds,
// when updates change fastest, send more.
func DensityWarmup(start, final float64, rounds, round int) float64 {
	if round >= rounds || rounds <= 0 || start <= final {
		return final
	}
	return start * math.Pow(final/start, float64(round)/float64(rounds))
}
