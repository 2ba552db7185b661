// Package lm benchmarks the transformer's training step (the shape of
// examples/brown-transformer.yaml) in tokens per second; compare.sh runs it
// beside the PyTorch reference (torch_lm.py), side by side in one run.
//
//	go test -run '^$' -bench . -benchtime 20x ./benchmarks/lm/
package lm

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
)

// The shape of examples/brown-transformer.yaml and of torch_lm.py.
var spec = train.ModelSpec{Kind: "transformer", Layers: 4, Width: 128, Heads: 4, Context: 64, Classes: 86}

const batch = 32

func BenchmarkTransformerStep(b *testing.B) {
	m, err := train.New(spec, batch, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	opt, _ := train.NewOptimizer(train.OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}, m.NumParams())
	r := data.Rand(1)
	tok := make([]uint8, 100*batch*(spec.Context+1))
	for i := range tok {
		tok[i] = uint8(r.IntN(spec.Classes))
	}
	set := &data.Set{Tokens: tok, Context: spec.Context, Stride: spec.Context, N: (len(tok) - 1) / spec.Context, Classes: spec.Classes}
	bt, err := train.NewBatcher(set, batch, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	if _, err := m.Local(context.Background(), opt, bt, b.N, nil); err != nil {
		b.Fatal(err)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec*1e3, "ms/step")
	b.ReportMetric(float64(batch*spec.Context)/sec, "tokens/s")
	// CPU time over all threads: a busy shared machine disturbs it less
	// than wall time.
	b.ReportMetric((cpuTime()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/step")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
