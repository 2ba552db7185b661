package round

import (
	"fmt"

	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/train"
)

// CheckpointFile encodes a flat parameter vector as a safetensors file with
// the model's tensor names. The bytes are deterministic, so every peer that
// holds the same parameters computes the same file CID (FileCID).
func CheckpointFile(spec train.ModelSpec, params []float32) ([]byte, error) {
	layout, err := train.Layout(spec)
	if err != nil {
		return nil, err
	}
	ts := make([]safetensors.Tensor, len(layout))
	off := 0
	for i, l := range layout {
		n := 1
		for _, d := range l.Shape {
			n *= d
		}
		if off+n > len(params) {
			return nil, fmt.Errorf("checkpoint: %d parameters, layout needs more", len(params))
		}
		ts[i] = safetensors.Tensor{Name: l.Name, Shape: l.Shape, Data: params[off : off+n]}
		off += n
	}
	if off != len(params) {
		return nil, fmt.Errorf("checkpoint: %d parameters, layout has %d", len(params), off)
	}
	return safetensors.Encode(ts, map[string]string{"format": "pt", "model": spec.Kind})
}

// OuterStateName is the tensor the outer optimizer's momentum is stored as.
const OuterStateName = "outer.momentum"

// VectorFile stores a plain vector (the outer optimizer's state) as a
// one-tensor safetensors file.
func VectorFile(name string, v []float32) ([]byte, error) {
	return safetensors.Encode([]safetensors.Tensor{{Name: name, Shape: []int{len(v)}, Data: v}}, nil)
}

// VectorOf flattens a checkpoint's tensors in file order and checks it
// holds want values.
func VectorOf(file []byte, want int) ([]float32, error) {
	ts, _, err := safetensors.Decode(file)
	if err != nil {
		return nil, err
	}
	out := make([]float32, 0, want)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d values, the model has %d", len(out), want)
	}
	return out, nil
}
