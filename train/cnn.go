package train

import (
	"fmt"

	G "gorgonia.org/gorgonia"
)

func init() { register("cnn", cnn{}) }

// cnn is two blocks of 5x5 convolution ('same' padding, no bias), ReLU and
// 2x2 max pooling, then a dense ReLU layer and the class logits, as a
// gorgonia graph (graphModel). Layout: conv1 (c1,1,5,5), conv2 (c2,c1,5,5),
// dense (c2·(rows/4)·(cols/4), d), bias (d), output (d, classes), bias.
type cnn struct{}

func (cnn) validate(s ModelSpec) error {
	if len(s.Channels) != 2 {
		return fmt.Errorf("model.channels: a cnn needs exactly 2 convolution widths, got %d", len(s.Channels))
	}
	for i, c := range s.Channels {
		if c <= 0 {
			return fmt.Errorf("model.channels[%d]: must be > 0, got %d", i, c)
		}
	}
	if s.Dense <= 0 {
		return fmt.Errorf("model.dense: must be > 0, got %d", s.Dense)
	}
	if s.rows()%4 != 0 || s.cols()%4 != 0 {
		return fmt.Errorf("data.shape: a cnn pools twice by 2, so rows and cols must be multiples of 4, got %dx%d", s.rows(), s.cols())
	}
	return nil
}

func (cnn) params(s ModelSpec) []param {
	c1, c2 := s.Channels[0], s.Channels[1]
	flat := c2 * (s.rows() / 4) * (s.cols() / 4)
	k := s.classes()
	return []param{
		{name: "conv1.weight", shape: []int{c1, 1, 5, 5}, std: heStd(1 * 5 * 5)},
		{name: "conv2.weight", shape: []int{c2, c1, 5, 5}, std: heStd(c1 * 5 * 5)},
		{name: "fc1.weight", shape: []int{flat, s.Dense}, std: heStd(flat)},
		{name: "fc1.bias", shape: []int{s.Dense}},
		{name: "fc2.weight", shape: []int{s.Dense, k}, std: heStd(s.Dense)},
		{name: "fc2.bias", shape: []int{k}},
	}
}

func (k cnn) build(s ModelSpec, batch int, seed uint64, cfg modelConfig) (Model, error) {
	return newGraphModel(s, k, batch, seed, cfg)
}

func (cnn) input(s ModelSpec, batch int) []int { return []int{batch, 1, s.rows(), s.cols()} }

func (cnn) forward(_ ModelSpec, ps []*G.Node, x *G.Node, train bool) (*G.Node, error) {
	// Two blocks of 5x5 convolution ('same' padding), ReLU and 2x2 max
	// pooling, as one op each (see convPool); the second returns the
	// flattened batch × features matrix the dense layers take.
	h, err := convPoolNode(x, ps[0], train, false, false)
	if err != nil {
		return nil, err
	}
	if h, err = convPoolNode(h, ps[1], train, true, true); err != nil {
		return nil, err
	}
	if h, err = dense(h, ps[2], ps[3], true); err != nil {
		return nil, err
	}
	return dense(h, ps[4], ps[5], false)
}
