//go:build !amd64 || purego

package train

// Without assembly, haveKernel is false: gemm and the conv blocks hand
// their products to gorgonia's BLAS.
var haveKernel = false

func kern4x16(k int, a, b *float32, ldb int, c *float32, ldc int, acc bool) {
	panic("kern4x16: no assembly kernels in this build")
}

func kern4x16off(k int, a, b *float32, off *int, c *float32, ldc int) {
	panic("kern4x16off: no assembly kernels in this build")
}

func kernDot4x3(k int, a *float32, lda int, b0, b1, b2 *float32, out *[12]float32) {
	panic("kernDot4x3: no assembly kernels in this build")
}
