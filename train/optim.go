package train

import (
	"fmt"
	"math"
	"slices"
)

// OptimizerSpec configures an inner optimizer. Fields a given optimizer does
// not use are ignored.
type OptimizerSpec struct {
	// Name is sgd, momentum or adam.
	Name string `json:"name"`
	// LR is the learning rate; must be > 0.
	LR float64 `json:"lr"`
	// Momentum is the momentum coefficient of momentum; in [0, 1).
	Momentum float64 `json:"momentum,omitempty"`
	// Nesterov switches momentum to Nesterov's form.
	Nesterov bool `json:"nesterov,omitempty"`
	// Beta1, Beta2 and Eps are Adam's; betas in [0, 1), eps > 0.
	Beta1 float64 `json:"beta1,omitempty"`
	Beta2 float64 `json:"beta2,omitempty"`
	Eps   float64 `json:"eps,omitempty"`
	// WeightDecay is decoupled weight decay (AdamW) or L2 for sgd; >= 0.
	WeightDecay float64 `json:"weight_decay,omitempty"`
}

// Validate checks the invariants of the spec, naming the field that breaks them.
func (s OptimizerSpec) Validate() error {
	if !(s.LR > 0) || math.IsInf(s.LR, 0) {
		return fmt.Errorf("lr: must be > 0, got %v", s.LR)
	}
	if s.WeightDecay < 0 {
		return fmt.Errorf("weight_decay: must be >= 0, got %v", s.WeightDecay)
	}
	switch s.Name {
	case "sgd":
	case "momentum":
		if s.Momentum < 0 || s.Momentum >= 1 {
			return fmt.Errorf("momentum: must be in [0, 1), got %v", s.Momentum)
		}
	case "adam":
		if s.Beta1 < 0 || s.Beta1 >= 1 {
			return fmt.Errorf("beta1: must be in [0, 1), got %v", s.Beta1)
		}
		if s.Beta2 < 0 || s.Beta2 >= 1 {
			return fmt.Errorf("beta2: must be in [0, 1), got %v", s.Beta2)
		}
		if !(s.Eps > 0) {
			return fmt.Errorf("eps: must be > 0, got %v", s.Eps)
		}
	default:
		return fmt.Errorf("name: unknown optimizer %q (want sgd, momentum or adam)", s.Name)
	}
	return nil
}

// Optimizer updates a flat parameter vector in place from its gradient.
// Its arithmetic is plain Go, element by element, so it is deterministic;
// large vectors are split among cores (elements are independent, so the
// split changes no bit).
type Optimizer interface {
	Step(params, grads []float32)
	// SetLRScale multiplies the configured learning rate by scale from the
	// next Step on (learning-rate schedules).
	SetLRScale(scale float64)
	// Reset forgets all state (moments, step count).
	Reset()
	// State is a copy of everything Step carries from one call to the next
	// (moments, step count) as one vector; SetState restores it. A
	// contributor commits to it so that an auditor can replay its local
	// work (round.Worker).
	State() []float32
	SetState(s []float32) error
}

// setState copies s into the parts of an optimizer's state, checking the
// length.
func setState(name string, s []float32, parts ...[]float32) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if len(s) != n {
		return fmt.Errorf("%s state: %d values, want %d", name, len(s), n)
	}
	for _, p := range parts {
		s = s[copy(p, s):]
	}
	return nil
}

// NewOptimizer returns the optimizer spec names, for nParams parameters.
func NewOptimizer(spec OptimizerSpec, nParams int) (Optimizer, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	switch spec.Name {
	case "sgd":
		return &sgd{spec: spec, lr: float32(spec.LR), wd: float32(spec.WeightDecay)}, nil
	case "momentum":
		return &momentum{spec: spec, lr: spec.LR, v: make([]float32, nParams)}, nil
	default:
		return &adam{spec: spec, lr: spec.LR, m: make([]float32, nParams), v: make([]float32, nParams)}, nil
	}
}

type sgd struct {
	spec   OptimizerSpec
	lr, wd float32
}

func (o *sgd) Reset()           {}
func (o *sgd) State() []float32 { return []float32{} }
func (o *sgd) SetState(s []float32) error {
	return setState("sgd", s)
}
func (o *sgd) SetLRScale(scale float64) { o.lr = float32(o.spec.LR * scale) }
func (o *sgd) Step(p, g []float32) {
	elementwise(len(p), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p[i] -= o.lr * (g[i] + o.wd*p[i])
		}
	})
}

type momentum struct {
	spec OptimizerSpec
	lr   float64
	v    []float32
}

func (o *momentum) Reset()           { clear(o.v) }
func (o *momentum) State() []float32 { return slices.Clone(o.v) }
func (o *momentum) SetState(s []float32) error {
	return setState("momentum", s, o.v)
}
func (o *momentum) SetLRScale(scale float64) { o.lr = o.spec.LR * scale }
func (o *momentum) Step(p, g []float32) {
	lr, mu, wd := float32(o.lr), float32(o.spec.Momentum), float32(o.spec.WeightDecay)
	elementwise(len(p), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			gi := g[i] + wd*p[i]
			o.v[i] = mu*o.v[i] + gi
			if o.spec.Nesterov {
				p[i] -= lr * (gi + mu*o.v[i])
			} else {
				p[i] -= lr * o.v[i]
			}
		}
	})
}

type adam struct {
	spec OptimizerSpec
	lr   float64
	m, v []float32
	t    int
}

func (o *adam) Reset() { clear(o.m); clear(o.v); o.t = 0 }

// State is m, then v, then the step count (exact as a float32 up to 2^24
// steps).
func (o *adam) State() []float32 {
	return append(append(slices.Clone(o.m), o.v...), float32(o.t))
}

func (o *adam) SetState(s []float32) error {
	if len(s) > 0 {
		if t := s[len(s)-1]; !(t >= 0 && t < 1<<24 && t == float32(int(t))) {
			return fmt.Errorf("adam state: step count %v is not a count", t)
		}
	}
	t := make([]float32, 1)
	if err := setState("adam", s, o.m, o.v, t); err != nil {
		return err
	}
	o.t = int(t[0])
	return nil
}
func (o *adam) SetLRScale(scale float64) { o.lr = o.spec.LR * scale }
func (o *adam) Step(p, g []float32) {
	o.t++
	b1, b2 := float32(o.spec.Beta1), float32(o.spec.Beta2)
	// Fold the bias corrections into the step size, as Adam's paper does.
	c1 := 1 - math.Pow(o.spec.Beta1, float64(o.t))
	c2 := 1 - math.Pow(o.spec.Beta2, float64(o.t))
	step := float32(o.lr * math.Sqrt(c2) / c1)
	eps := float32(o.spec.Eps * math.Sqrt(c2))
	decay := float32(1 - o.lr*o.spec.WeightDecay)
	elementwise(len(p), func(lo, hi int) {
		m, v, p, g := o.m[lo:hi], o.v[lo:hi], p[lo:hi], g[lo:hi]
		for i := range p {
			gi := g[i]
			m[i] = b1*m[i] + (1-b1)*gi
			v[i] = b2*v[i] + (1-b2)*gi*gi
			p[i] = p[i]*decay - step*m[i]/(float32(math.Sqrt(float64(v[i])))+eps)
		}
	})
}

// elementwiseMin is the vector length from which an optimizer step is split
// among cores.
const elementwiseMin = 1 << 15

// elementwise runs f over [0, n), split among cores when n is large.
func elementwise(n int, f func(lo, hi int)) {
	if n < elementwiseMin {
		f(0, n)
		return
	}
	parallel(n, f)
}
