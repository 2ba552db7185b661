package train

import (
	"fmt"
	"math"
	"testing"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// naiveGemm is the reference: C = op(A)·op(B) (+ C when acc) in float64.
func naiveGemm(tA, tB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, acc bool, c []float32, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if tB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			if acc {
				s += float64(c[i*ldc+j])
			}
			c[i*ldc+j] = float32(s)
		}
	}
}

// TestGemmMatchesNaive checks gemm against a float64 triple loop for every
// transposition, edge sizes on every side, sums longer than one packed
// block, padded leading dimensions and accumulation.
func TestGemmMatchesNaive(t *testing.T) {
	withKernels(t, testGemmMatchesNaive)
}

func testGemmMatchesNaive(t *testing.T) {
	r := data.Rand(21)
	for _, s := range [][3]int{{1, 1, 1}, {4, 16, 8}, {5, 17, 3}, {8, 50, 25}, {16, 33, 300}, {7, 200, 513}, {64, 128, 0}, {3, 2, 700}, {5, 7, 2100}} {
		m, n, k := s[0], s[1], s[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					name := fmt.Sprintf("%dx%dx%d tA=%v tB=%v acc=%v", m, n, k, tA, tB, acc)
					ar, ac := m, k
					if tA {
						ar, ac = k, m
					}
					br, bc := k, n
					if tB {
						br, bc = n, k
					}
					lda, ldb, ldc := ac+3, bc+1, n+2
					a := randFloats(r, max(0, (ar-1)*lda+ac))
					b := randFloats(r, max(0, (br-1)*ldb+bc))
					c := randFloats(r, (m-1)*ldc+n)
					want := append([]float32(nil), c...)
					gemm(tA, tB, m, n, k, a, lda, b, ldb, acc, c, ldc)
					naiveGemm(tA, tB, m, n, k, a, lda, b, ldb, acc, want, ldc)
					for i := 0; i < m; i++ {
						for j := 0; j < ldc && i*ldc+j < len(c); j++ {
							g, w := c[i*ldc+j], want[i*ldc+j]
							if j >= n {
								if math.Float32bits(g) != math.Float32bits(w) {
									t.Fatalf("%s: wrote C[%d][%d] outside the matrix", name, i, j)
								}
								continue
							}
							if math.Abs(float64(g-w)) > 1e-4*math.Sqrt(float64(k+1))*math.Max(1, math.Abs(float64(w))) {
								t.Fatalf("%s: C[%d][%d] = %v, want %v", name, i, j, g, w)
							}
						}
					}
				}
			}
		}
	}
}
