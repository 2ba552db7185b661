//go:build !openblas

package train

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"
)

// In the pure-Go build gorgonia's float32 matrix products (the dense
// layers) go through gemm where this CPU runs its kernel; everything else
// stays gonum's. Gorgonia keeps one process-wide BLAS, so this is an init
// by necessity.
func init() {
	if haveKernel {
		gorgonia.Use(fastBLAS{})
	}
}

// BLAS names the BLAS implementation in use.
func BLAS() string {
	if haveKernel {
		return "gonum (pure Go) + swarmtrain sgemm (AVX2/FMA)"
	}
	return "gonum (pure Go)"
}

// fastBLAS is gonum's BLAS with Sgemm replaced by gemm for the calls gemm
// covers (alpha 1, beta 0 or 1).
type fastBLAS struct{ gonum.Implementation }

func (f fastBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if !haveKernel || alpha != 1 || (beta != 0 && beta != 1) || (tA != blas.NoTrans && tA != blas.Trans) || (tB != blas.NoTrans && tB != blas.Trans) {
		f.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	gemm(tA == blas.Trans, tB == blas.Trans, m, n, k, a, lda, b, ldb, beta == 1, c, ldc)
}
