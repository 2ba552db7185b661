package train

import (
	"fmt"
	"sync"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
)

// gemm is a float32 matrix product for the shapes the models use, built
// around one register-blocked micro-kernel (kern4x16: a 4 × 16 block of C
// per call, AVX2 and FMA on amd64). gonum's pure-Go sgemm reaches about 10-20
// GFLOP/s on them and OpenBLAS is slow on the convolutions' skinny products
// (8 or 16 rows against 50,000 columns, or a 50,000-long sum), so the conv
// blocks use gemm in every build, and the pure-Go build also hands
// gorgonia's dense products to it (see fastBLAS).
//
// Layout: A is packed once into panels of 4 rows (zero-padded); B is read in
// place, 16 columns at a time, when it is not transposed, and packed per
// 256-step block otherwise; C is written in place, or through a small tile
// at the edges. Columns of C are split among cores; every element sums its
// products in index order, blocks of 256 in order, whatever the number of
// cores or the element's position, so the result is deterministic.
const (
	gemmMR = 4   // rows of C per kernel call
	gemmNR = 16  // columns of C per kernel call
	gemmKC = 256 // steps of the sum per packed block of B
	// gemmParallelMin is the number of multiply-adds below which gemm runs
	// on one goroutine.
	gemmParallelMin = 1 << 18
	// gemmNTMin is the sum length from which a product with Bᵀ goes to
	// gemmNT instead of packing Bᵀ.
	gemmNTMin = 256
)

var gemmBufs = sync.Pool{New: func() any { return new([]float32) }}

func getBuf(n int) *[]float32 {
	p := gemmBufs.Get().(*[]float32)
	if cap(*p) < n {
		*p = make([]float32, n)
	}
	*p = (*p)[:n]
	return p
}

// gemm computes C = op(A)·op(B), or C += op(A)·op(B) when acc, for row-major
// matrices: op(A) is m × k (A is stored k × m when tA), op(B) is k × n (B
// stored n × k when tB), C is m × n with leading dimension ldc.
func gemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, acc bool, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if !haveKernel {
		ta, tb, beta := blas.NoTrans, blas.NoTrans, float32(0)
		if tA {
			ta = blas.Trans
		}
		if tB {
			tb = blas.Trans
		}
		if acc {
			beta = 1
		}
		G.WhichBLAS().Sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if k == 0 {
		if !acc {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if tB && !tA && k >= gemmNTMin {
		gemmNT(m, n, k, a, lda, b, ldb, acc, c, ldc)
		return
	}
	mp := (m + gemmMR - 1) / gemmMR
	apBuf := getBuf(mp * gemmMR * k)
	defer gemmBufs.Put(apBuf)
	ap := *apBuf
	packA(tA, m, k, a, lda, ap)

	np := (n + gemmNR - 1) / gemmNR
	work := func(lo, hi int) {
		bpBuf := getBuf(gemmKC * gemmNR)
		defer gemmBufs.Put(bpBuf)
		bbuf := *bpBuf
		var tile [gemmMR * gemmNR]float32
		for jp := lo; jp < hi; jp++ {
			j0 := jp * gemmNR
			jw := min(gemmNR, n-j0)
			for p0 := 0; p0 < k; p0 += gemmKC {
				kb := min(gemmKC, k-p0)
				bp, bld := bbuf, gemmNR
				if !tB && jw == gemmNR {
					bp, bld = b[p0*ldb+j0:], ldb
				} else {
					packB(tB, kb, jw, b, ldb, p0, j0, bbuf)
				}
				add := acc || p0 > 0
				for ip := 0; ip < mp; ip++ {
					i0 := ip * gemmMR
					iw := min(gemmMR, m-i0)
					apan := ap[ip*gemmMR*k+p0*gemmMR:]
					if iw == gemmMR && jw == gemmNR {
						kern4x16(kb, &apan[0], &bp[0], bld, &c[i0*ldc+j0], ldc, add)
						continue
					}
					// Edge block: run the kernel on a full tile, keep the valid part.
					if add {
						for i := 0; i < iw; i++ {
							copy(tile[i*gemmNR:i*gemmNR+jw], c[(i0+i)*ldc+j0:])
						}
					}
					kern4x16(kb, &apan[0], &bp[0], bld, &tile[0], gemmNR, add)
					for i := 0; i < iw; i++ {
						copy(c[(i0+i)*ldc+j0:(i0+i)*ldc+j0+jw], tile[i*gemmNR:])
					}
				}
			}
		}
	}
	if m*n*k < gemmParallelMin {
		work(0, np)
		return
	}
	parallel(np, work)
}

// packA copies op(A) (m × k) into panels of gemmMR rows: panel ip holds, for
// each step p, rows 4ip..4ip+3 of column p (zero past row m).
func packA(tA bool, m, k int, a []float32, lda int, ap []float32) {
	mp := (m + gemmMR - 1) / gemmMR
	for ip := 0; ip < mp; ip++ {
		pan := ap[ip*gemmMR*k : (ip+1)*gemmMR*k]
		i0 := ip * gemmMR
		iw := min(gemmMR, m-i0)
		if iw < gemmMR {
			clear(pan)
		}
		if tA { // A stored k × m: row p holds op(A)'s column p
			for p := 0; p < k; p++ {
				copy(pan[p*gemmMR:p*gemmMR+iw], a[p*lda+i0:p*lda+i0+iw])
			}
			continue
		}
		for i := 0; i < iw; i++ {
			row := a[(i0+i)*lda : (i0+i)*lda+k]
			for p, v := range row {
				pan[p*gemmMR+i] = v
			}
		}
	}
}

// packB copies steps p0..p0+kb of op(B)'s columns j0..j0+jw into dst as a
// kb × gemmNR block (zero past column jw).
func packB(tB bool, kb, jw int, b []float32, ldb, p0, j0 int, dst []float32) {
	dst = dst[:kb*gemmNR]
	if jw < gemmNR {
		clear(dst)
	}
	if !tB {
		for p := 0; p < kb; p++ {
			copy(dst[p*gemmNR:p*gemmNR+jw], b[(p0+p)*ldb+j0:])
		}
		return
	}
	// B stored n × k: op(B)'s column j is row j of B.
	for j := 0; j < jw; j++ {
		row := b[(j0+j)*ldb+p0 : (j0+j)*ldb+p0+kb]
		for p, v := range row {
			dst[p*gemmNR+j] = v
		}
	}
}

// checkGemm panics, as a BLAS does, when a slice is too short for the
// shape: the kernel reads and writes without bounds checks.
func checkGemm(tA, tB bool, m, n, k, la, lda, lb, ldb, lc, ldc int) {
	need := func(what string, rows, cols, ld, have int) {
		if ld < max(1, cols) {
			panic(fmt.Sprintf("gemm: %s leading dimension %d < %d", what, ld, cols))
		}
		if rows > 0 && cols > 0 && have < (rows-1)*ld+cols {
			panic(fmt.Sprintf("gemm: %s has %d values, %dx%d (ld %d) needs %d", what, have, rows, cols, ld, (rows-1)*ld+cols))
		}
	}
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: negative dimension %d, %d, %d", m, n, k))
	}
	if tA {
		need("A", k, m, lda, la)
	} else {
		need("A", m, k, lda, la)
	}
	if tB {
		need("B", n, k, ldb, lb)
	} else {
		need("B", k, n, ldb, lb)
	}
	need("C", m, n, ldc, lc)
}

// dotKC is how many steps of the sum gemmNT covers per block: a block of 4
// rows of A (16 KB) stays in L1 while the rows of B it meets stream past.
const dotKC = 1024

// gemmNT is gemm for op(B) = Bᵀ with a long sum (the dense layers'
// gradients, and the shape of the convolutions' weight gradients): every
// element is a dot product of a row of A with a row of B, both contiguous,
// so nothing is packed (see dotGemm).
func gemmNT(m, n, k int, a []float32, lda int, b []float32, ldb int, acc bool, c []float32, ldc int) {
	dotGemm(m, n, k, a, lda, func(j int) []float32 { return b[j*ldb : j*ldb+k] }, acc, c, ldc)
}

// dotGemm computes C (m × n) = A·Bᵀ (+ C when acc) where row i of A starts at
// a[i·lda] and row j of B is brow(j), both k long. kernDot4x3 covers 4 rows
// of A by 3 of B per call; missing rows at the edges read zeros. Rows of B
// are split among cores; each element's sum runs over blocks of dotKC
// steps in order, so the result does not depend on the number of cores.
//
// Without the assembly kernels, B is written out and handed to gorgonia's
// BLAS.
func dotGemm(m, n, k int, a []float32, lda int, brow func(j int) []float32, acc bool, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if !haveKernel {
		bBuf := getBuf(n * k)
		defer gemmBufs.Put(bBuf)
		b := *bBuf
		for j := 0; j < n; j++ {
			copy(b[j*k:(j+1)*k], brow(j))
		}
		beta := float32(0)
		if acc {
			beta = 1
		}
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.Trans, m, n, k, 1, a, lda, b, k, beta, c, ldc)
		return
	}
	mg := (m + 3) / 4
	ng := (n + 2) / 3
	zeroBuf := getBuf(dotKC)
	defer gemmBufs.Put(zeroBuf)
	zero := *zeroBuf
	clear(zero)
	work := func(lo, hi int) {
		var padBuf *[]float32
		if m%4 != 0 {
			padBuf = getBuf(4 * dotKC)
			defer gemmBufs.Put(padBuf)
		}
		var out [12]float32
		var bs [3][]float32
		for p0 := 0; p0 < k || p0 == 0; p0 += dotKC {
			kb := min(dotKC, k-p0)
			k8 := kb &^ 7
			for g := 0; g < mg; g++ {
				i0 := g * 4
				iw := min(4, m-i0)
				ablk, ald := a[i0*lda+p0:], lda
				if iw < 4 {
					pad := (*padBuf)[:4*kb]
					clear(pad)
					for i := 0; i < iw; i++ {
						copy(pad[i*kb:(i+1)*kb], a[(i0+i)*lda+p0:])
					}
					ablk, ald = pad, kb
				}
				for t := lo; t < hi; t++ {
					j0 := t * 3
					jw := min(3, n-j0)
					for j := range bs {
						if j < jw {
							bs[j] = brow(j0 + j)[p0 : p0+kb]
						} else {
							bs[j] = zero[:kb]
						}
					}
					if k8 == 0 {
						out = [12]float32{}
					} else {
						kernDot4x3(k8, &ablk[0], ald, &bs[0][0], &bs[1][0], &bs[2][0], &out)
					}
					for i := 0; i < iw; i++ {
						arow := ablk[i*ald : i*ald+kb]
						for j := 0; j < jw; j++ {
							s := out[3*i+j]
							for p := k8; p < kb; p++ {
								s += arow[p] * bs[j][p]
							}
							if acc || p0 > 0 {
								s += c[(i0+i)*ldc+j0+j]
							}
							c[(i0+i)*ldc+j0+j] = s
						}
					}
				}
			}
		}
	}
	if m*n*k < gemmParallelMin {
		work(0, ng)
		return
	}
	parallel(ng, work)
}
