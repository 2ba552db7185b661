//go:build amd64 && !purego

package train

import "golang.org/x/sys/cpu"

// kern4x16 is the AVX2/FMA micro-kernel of gemm (sgemm_amd64.s).
//
//go:noescape
func kern4x16(k int, a, b *float32, ldb int, c *float32, ldc int, acc bool)

// haveKernel says whether this CPU runs kern4x16; without AVX2 and FMA,
// gemm hands its products to gorgonia's BLAS.
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernDot4x3 is the dot-product kernel of gemmNT (sgemm_amd64.s).
//
//go:noescape
func kernDot4x3(k int, a *float32, lda int, b0, b1, b2 *float32, out *[12]float32)
