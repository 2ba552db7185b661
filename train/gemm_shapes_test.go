package train

import (
	"testing"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
)

// gemmShapes are the products of a cnn step (batch 64) in their im2col
// form, and of its dense layer; BenchmarkGemmShapes runs each through
// gorgonia's BLAS (gonum, or OpenBLAS with -tags openblas) and through gemm:
//
//	go test -run '^$' -bench GemmShapes ./train/
var gemmShapes = []struct {
	name    string
	ta, tb  blas.Transpose
	m, n, k int
}{
	{"c1fwd", blas.NoTrans, blas.NoTrans, 8, 50176, 25},
	{"c1dw", blas.NoTrans, blas.Trans, 8, 25, 50176},
	{"c2fwd", blas.NoTrans, blas.NoTrans, 16, 12544, 200},
	{"c2dw", blas.NoTrans, blas.Trans, 16, 200, 12544},
	{"c2dcol", blas.Trans, blas.NoTrans, 200, 12544, 16},
	{"fc1", blas.NoTrans, blas.NoTrans, 64, 128, 784},
	{"fc1dw", blas.Trans, blas.NoTrans, 784, 128, 64},
	{"fc1dx", blas.NoTrans, blas.Trans, 64, 784, 128},
}

func BenchmarkGemmShapes(b *testing.B) {
	for _, impl := range []string{"blas", "gemm"} {
		for _, s := range gemmShapes {
			b.Run(impl+"/"+s.name, func(b *testing.B) {
				a := make([]float32, s.m*s.k)
				bb := make([]float32, s.k*s.n)
				c := make([]float32, s.m*s.n)
				for i := range a {
					a[i] = float32(i%7) - 3
				}
				for i := range bb {
					bb[i] = float32(i%5) - 2
				}
				lda, ldb := s.k, s.n
				if s.ta == blas.Trans {
					lda = s.m
				}
				if s.tb == blas.Trans {
					ldb = s.k
				}
				bl := G.WhichBLAS()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if impl == "gemm" {
						gemm(s.ta == blas.Trans, s.tb == blas.Trans, s.m, s.n, s.k, a, lda, bb, ldb, false, c, s.n)
					} else {
						bl.Sgemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
					}
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
			})
		}
	}
}
