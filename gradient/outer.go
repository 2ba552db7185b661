package gradient

import "fmt"

// Outer is DiLoCo's outer optimizer: SGD with Nesterov momentum applied to
// the aggregated pseudo-gradient Δ = M_r − θ (so stepping against Δ moves
// the model toward where the workers went). As in PyTorch's SGD with
// nesterov=True: v = μ·v + Δ; M = M − lr·(Δ + μ·v). Its arithmetic is
// float32 in index order, so peers that mirror it stay bit-identical.
type Outer struct {
	lr, mu float32
	v      []float32
}

// OpenDiLoCo's outer optimizer settings.
const (
	DefaultOuterLR       = 0.7
	DefaultOuterMomentum = 0.9
)

// NewOuter returns the outer optimizer for n parameters; lr > 0 and
// momentum in [0, 1) (0 is plain SGD).
func NewOuter(n int, lr, momentum float64) (*Outer, error) {
	if !(lr > 0) {
		return nil, fmt.Errorf("outer optimizer: lr must be > 0, got %v", lr)
	}
	if momentum < 0 || momentum >= 1 {
		return nil, fmt.Errorf("outer optimizer: momentum must be in [0, 1), got %v", momentum)
	}
	return &Outer{lr: float32(lr), mu: float32(momentum), v: make([]float32, n)}, nil
}

// Step updates params in place with the pseudo-gradient.
func (o *Outer) Step(params, pseudoGrad []float32) error {
	if len(params) != len(o.v) || len(pseudoGrad) != len(o.v) {
		return fmt.Errorf("outer step: %d params and %d gradient values for an optimizer of %d", len(params), len(pseudoGrad), len(o.v))
	}
	for i, g := range pseudoGrad {
		o.v[i] = o.mu*o.v[i] + g
		params[i] -= o.lr * (g + o.mu*o.v[i])
	}
	return nil
}

// State returns a copy of the momentum buffer, for checkpoints and for peers
// that must mirror the optimizer.
func (o *Outer) State() []float32 { return append([]float32(nil), o.v...) }

// SetState restores a momentum buffer saved with State.
func (o *Outer) SetState(v []float32) error {
	if len(v) != len(o.v) {
		return fmt.Errorf("outer state: %d values for an optimizer of %d", len(v), len(o.v))
	}
	copy(o.v, v)
	return nil
}
