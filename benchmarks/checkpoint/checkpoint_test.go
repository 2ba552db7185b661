// Package checkpoint measures what writing a model checkpoint in PyTorch's
// layout costs against writing the flat vector as it is (the layout of
// earlier builds), side by side in one run: the seal writes one per round.
package checkpoint

import (
	"testing"

	"github.com/swarmtrain/swarmtrain/round"
	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/train"
)

var specs = []struct {
	name string
	spec train.ModelSpec
}{
	{"mlp-784-256-128-10", train.ModelSpec{Kind: "mlp", Hidden: []int{256, 128}}},
	{"cnn-8-16-128", train.ModelSpec{Kind: "cnn", Channels: []int{8, 16}, Dense: 128}},
	{"mlp-784-2048-2048-10", train.ModelSpec{Kind: "mlp", Hidden: []int{2048, 2048}}},
}

func params(b *testing.B, spec train.ModelSpec) []float32 {
	n, err := train.NumParams(spec)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]float32, n)
	for i := range p {
		p[i] = float32(i%251) / 251
	}
	return p
}

// BenchmarkWrite: torch = round.CheckpointFile (transposed dense weights,
// metadata); flat = the same vector cut at the same offsets, untransposed.
func BenchmarkWrite(b *testing.B) {
	for _, s := range specs {
		p := params(b, s.spec)
		tm, _ := train.TorchLayout(s.spec)
		b.Run(s.name+"/torch", func(b *testing.B) {
			b.SetBytes(int64(4 * len(p)))
			for range b.N {
				if _, err := round.CheckpointFile(s.spec, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/flat", func(b *testing.B) {
			b.SetBytes(int64(4 * len(p)))
			for range b.N {
				ts := make([]safetensors.Tensor, len(tm.Tensors))
				for i, t := range tm.Tensors {
					ts[i] = safetensors.Tensor{Name: t.Name, Shape: t.Shape, Data: p[t.Offset : t.Offset+t.Size()]}
				}
				if _, err := safetensors.Encode(ts, map[string]string{"format": "pt"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRead: a checkpoint back into the flat vector (what a
// contributor does on every model it fetches).
func BenchmarkRead(b *testing.B) {
	for _, s := range specs {
		p := params(b, s.spec)
		file, err := round.CheckpointFile(s.spec, p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(p)))
			for range b.N {
				if _, err := round.VectorOf(file, len(p)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
