//go:build !amd64 || purego

package train

const haveKernel = false

func kern4x16(k int, a, b *float32, ldb int, c *float32, ldc int, acc bool) {
	panic("kern4x16: no kernel on this architecture")
}

func kernDot4x3(k int, a *float32, lda int, b0, b1, b2 *float32, out *[12]float32) {
	panic("kernDot4x3: no kernel on this architecture")
}
