package train

import (
	"fmt"

	G "gorgonia.org/gorgonia"
)

func init() { register("mlp", mlp{}) }

// mlp is a stack of dense layers with ReLU between them, input pixels to
// class logits, as a gorgonia graph (graphModel). Layout: for each layer a
// weight (in, out) then a bias (out).
type mlp struct{}

func (mlp) validate(s ModelSpec) error {
	if len(s.Hidden) == 0 {
		return fmt.Errorf("model.hidden: an mlp needs at least one hidden layer")
	}
	for i, h := range s.Hidden {
		if h <= 0 {
			return fmt.Errorf("model.hidden[%d]: must be > 0, got %d", i, h)
		}
	}
	return nil
}

func (mlp) params(s ModelSpec) []param {
	var ps []param
	in := s.rows() * s.cols()
	for i, h := range append(append([]int{}, s.Hidden...), s.classes()) {
		ps = append(ps, param{name: fmt.Sprintf("layers.%d.weight", i), shape: []int{in, h}, std: heStd(in)},
			param{name: fmt.Sprintf("layers.%d.bias", i), shape: []int{h}})
		in = h
	}
	return ps
}

func (k mlp) build(s ModelSpec, batch int, seed uint64, cfg modelConfig) (Model, error) {
	return newGraphModel(s, k, batch, seed, cfg)
}

func (mlp) input(s ModelSpec, batch int) []int { return []int{batch, s.rows() * s.cols()} }

func (mlp) forward(_ ModelSpec, ps []*G.Node, x *G.Node, _ bool) (*G.Node, error) {
	h := x
	var err error
	for i := 0; i < len(ps); i += 2 {
		if h, err = dense(h, ps[i], ps[i+1], i+2 < len(ps)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// dense is h·w + b, with a ReLU when relu.
func dense(h, w, b *G.Node, relu bool) (*G.Node, error) {
	z, err := G.Mul(h, w)
	if err != nil {
		return nil, err
	}
	if z, err = G.BroadcastAdd(z, b, nil, []byte{0}); err != nil {
		return nil, err
	}
	if relu {
		return G.Rectify(z)
	}
	return z, nil
}
