//go:build amd64 && !purego

package train

import "golang.org/x/sys/cpu"

// haveKernel says whether this CPU runs the assembly kernels (AVX2 and
// FMA); without them gemm hands its products to gorgonia's BLAS and the
// conv blocks use the Go kernels of sgemm_go.go.
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// The micro-kernels of sgemm_amd64.s; sgemm_go.go documents what each
// computes and holds the same arithmetic in Go.

//go:noescape
func kern4x16(k int, a, b *float32, ldb int, c *float32, ldc int, acc bool)

//go:noescape
func kern4x16off(k int, a, b *float32, off *int, c *float32, ldc int)

//go:noescape
func kernDot4x3(k int, a *float32, lda int, b0, b1, b2 *float32, out *[12]float32)
