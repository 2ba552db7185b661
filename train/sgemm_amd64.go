//go:build amd64 && !purego

package train

import "golang.org/x/sys/cpu"

// haveKernel says whether this CPU runs the assembly kernels (AVX2 and
// FMA); without them gemm and the conv blocks hand their products to
// gorgonia's BLAS.
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// The micro-kernels of sgemm_amd64.s (documented there).

//go:noescape
func kern4x16(k int, a, b *float32, ldb int, c *float32, ldc int, acc bool)

//go:noescape
func kern4x16off(k int, a, b *float32, off *int, c *float32, ldc int)

//go:noescape
func kernDot4x3(k int, a *float32, lda int, b0, b1, b2 *float32, out *[12]float32)
