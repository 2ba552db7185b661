package node

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/swarmtrain/swarmtrain/config"
	"github.com/swarmtrain/swarmtrain/storage"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/train"
)

// ModelSpec is the train package's view of the config's model.
func ModelSpec(c *config.Swarm) train.ModelSpec {
	return train.ModelSpec{Kind: c.Model.Kind, Hidden: c.Model.Hidden, Channels: c.Model.Channels, Dense: c.Model.Dense}
}

// OptimizerSpec is the train package's view of a config optimizer.
func OptimizerSpec(o config.Optimizer) train.OptimizerSpec {
	return train.OptimizerSpec{Name: o.Name, LR: o.LR, Momentum: o.Momentum, Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay}
}

// checkpointFile encodes a flat parameter vector as a safetensors file with
// the model's tensor names; the bytes are deterministic, so every peer that
// holds the same parameters computes the same file CID.
func checkpointFile(spec train.ModelSpec, params []float32) ([]byte, error) {
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

// vectorFile stores a plain vector (the outer optimizer's state) as a
// one-tensor safetensors file.
func vectorFile(name string, v []float32) ([]byte, error) {
	return safetensors.Encode([]safetensors.Tensor{{Name: name, Shape: []int{len(v)}, Data: v}}, nil)
}

// putFile stores a file and announces it.
func putFile(ctx context.Context, ex *storage.Exchange, b []byte) (cid.Cid, error) {
	c, err := ex.AddFile(ctx, b)
	if err != nil {
		return cid.Undef, err
	}
	_ = ex.Provide(ctx, c) // best effort: peers also find it by asking connected peers
	return c, nil
}

// loadVector fetches a checkpoint by CID and flattens its tensors in file order.
func loadVector(ctx context.Context, ex *storage.Exchange, c cid.Cid, want int) ([]float32, error) {
	b, err := ex.File(ctx, c)
	if err != nil {
		return nil, err
	}
	ts, _, err := safetensors.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", c, err)
	}
	out := make([]float32, 0, want)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	if len(out) != want {
		return nil, fmt.Errorf("checkpoint %s: %d values, the model has %d", c, len(out), want)
	}
	return out, nil
}
