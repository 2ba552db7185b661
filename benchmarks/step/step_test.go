// Package step benchmarks one local training step of the registry's models
// against a plain sgemm measured in the same run, so the step's GFLOP/s can
// be read as a fraction of what this machine's BLAS does at its best.
// compare.sh runs it beside the PyTorch reference (torch_ref.py).
//
//	go test -run '^$' -bench . -benchtime 50x ./benchmarks/step/
//	CGO_LDFLAGS=-lopenblas go test -tags openblas -run '^$' -bench . -benchtime 50x ./benchmarks/step/
package step

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/swarmtrain/swarmtrain/train"
	"github.com/swarmtrain/swarmtrain/train/data"
	"gorgonia.org/tensor"
)

const batch = 64

var models = []struct {
	name string
	spec train.ModelSpec
}{
	{"mlp-256-128", train.ModelSpec{Kind: "mlp", Hidden: []int{256, 128}}},
	{"cnn-8-16-128", train.ModelSpec{Kind: "cnn", Channels: []int{8, 16}, Dense: 128}},
}

// stepFLOPs counts the multiply-adds (x2) of one training step: forward,
// plus twice the forward for the backward pass (gradients with respect to
// inputs and to weights), the usual 3x rule. Element-wise work is ignored.
func stepFLOPs(spec train.ModelSpec) float64 {
	var fwd float64
	switch spec.Kind {
	case "mlp":
		in := 784
		for _, h := range append(append([]int{}, spec.Hidden...), 10) {
			fwd += 2 * float64(in*h)
			in = h
		}
	case "cnn":
		c1, c2 := spec.Channels[0], spec.Channels[1]
		fwd += 2 * float64(28*28*c1*25)    // conv1, 'same' padding
		fwd += 2 * float64(14*14*c2*c1*25) // conv2
		fwd += 2 * float64(c2*49*spec.Dense)
		fwd += 2 * float64(spec.Dense*10)
	}
	return 3 * fwd * batch
}

func BenchmarkStep(b *testing.B) {
	for _, mdl := range models {
		b.Run(mdl.name, func(b *testing.B) {
			mm, err := train.New(mdl.spec, batch, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer mm.Close()
			m := mm.(train.Classifier)
			opt, _ := train.NewOptimizer(train.OptimizerSpec{Name: "adam", LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, m.NumParams())
			r := data.Rand(1)
			x := make([]float32, batch*784)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			y := make([]uint8, batch)
			for i := range y {
				y[i] = uint8(r.IntN(10))
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				if _, err := m.Grad(x, y); err != nil {
					b.Fatal(err)
				}
				opt.Step(m.Params(), m.Grads())
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(sec*1e3, "ms/step")
			b.ReportMetric((cpuTime()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/step")
			b.ReportMetric(batch/sec, "samples/s")
			b.ReportMetric(stepFLOPs(mdl.spec)/sec/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSgemm is the reference: one 512x512x512 float32 matrix product
// through the BLAS gorgonia uses (gorgonia.Use sets tensor's too): pure Go,
// or OpenBLAS with -tags openblas.
func BenchmarkSgemm(b *testing.B) {
	const n = 512
	r := data.Rand(2)
	mk := func() *tensor.Dense {
		v := make([]float32, n*n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return tensor.New(tensor.WithShape(n, n), tensor.WithBacking(v))
	}
	a, c := mk(), mk()
	out := tensor.New(tensor.WithShape(n, n), tensor.Of(tensor.Float32))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tensor.MatMul(a, c, tensor.WithReuse(out)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*n*n*n/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
}

// cpuTime is the CPU time (user and system) of the whole process so far:
// all its threads, OpenBLAS's included. Beside the wall time it shows how
// many cores a step keeps busy, and it is less sensitive than wall time to
// other processes on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMain names the BLAS in the output, so a pasted table says what ran.
func TestMain(m *testing.M) {
	println("BLAS:", train.BLAS())
	os.Exit(m.Run())
}
