package train

// Go versions of the micro-kernels, for CPUs and architectures without the
// assembly ones (haveKernel false), and the reference the tests hold the
// assembly to. Slices carry what the assembly reads through pointers.

// kern4x16offGo: c[i·ldc + j] = Σ_p a[4p + i] · b[j0 + off[p] + j] for
// i < 4, j < 16, p < k, summed in p order.
func kern4x16offGo(k int, a, b []float32, j0 int, off []int, c []float32, ldc int) {
	var acc [4][16]float32
	for p := 0; p < k; p++ {
		row := b[j0+off[p] : j0+off[p]+16]
		for i := range acc {
			av := a[4*p+i]
			for j, bv := range row {
				acc[i][j] += av * bv
			}
		}
	}
	for i := range acc {
		copy(c[i*ldc:i*ldc+16], acc[i][:])
	}
}

// kernDot4x3Go: out[3i + j] = Σ_p a[i·lda + p] · b[j][p] for i < 4, j < 3,
// p < k, summed in p order.
func kernDot4x3Go(k int, a []float32, lda int, b *[3][]float32, out *[12]float32) {
	for i := 0; i < 4; i++ {
		arow := a[i*lda : i*lda+k]
		for j := 0; j < 3; j++ {
			var s float32
			for p, bv := range b[j][:k] {
				s += arow[p] * bv
			}
			out[3*i+j] = s
		}
	}
}
