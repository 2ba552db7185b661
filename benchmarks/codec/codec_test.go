// Package codec benchmarks the gradient codecs on a 10M-element vector
// beside a plain memory copy of the same bytes, measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 20x ./benchmarks/codec/
//
// Throughput (MB/s) is of fp32 input for encodes and fp32 output for decodes,
// so it compares directly with the copy.
package codec

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/swarmtrain/swarmtrain/gradient"
)

const elems = 10_000_000

func vector() []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, elems)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.01)
	}
	return v
}

// BenchmarkMemcpy copies the 40 MB vector: the memory-bandwidth yardstick.
func BenchmarkMemcpy(b *testing.B) {
	src := vector()
	dst := make([]float32, elems)
	b.SetBytes(4 * elems)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(dst, src)
	}
}

func BenchmarkEncode(b *testing.B) {
	v := vector()
	for _, name := range []string{gradient.TopKInt2, gradient.TopKInt8, gradient.TopK, gradient.TopKFP16, gradient.Int8, gradient.FP16, gradient.Dense} {
		c, _ := gradient.NewCodec(name, 0.01)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(4 * elems)
			var n int
			for i := 0; i < b.N; i++ {
				msg, err := gradient.Marshal(c, v)
				if err != nil {
					b.Fatal(err)
				}
				n = len(msg)
			}
			b.ReportMetric(float64(4*elems)/float64(n), "x-smaller")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	v := vector()
	dst := make([]float32, elems)
	for _, name := range []string{gradient.TopKInt2, gradient.TopKInt8, gradient.TopK, gradient.TopKFP16, gradient.Int8, gradient.FP16, gradient.Dense} {
		c, _ := gradient.NewCodec(name, 0.01)
		msg, _ := gradient.Marshal(c, v)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(4 * elems)
			for i := 0; i < b.N; i++ {
				if _, err := gradient.UnmarshalInto(dst, msg, gradient.Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSelectTopK isolates the selection (sampled threshold, one
// parallel pass, exact pick).
func BenchmarkSelectTopK(b *testing.B) {
	v := vector()
	for _, d := range []float64{0.001, 0.01} {
		b.Run(fmt.Sprint(d), func(b *testing.B) {
			b.SetBytes(4 * elems)
			for i := 0; i < b.N; i++ {
				gradient.SelectTopK(v, int(d*elems))
			}
		})
	}
}
