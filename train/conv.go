package train

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	G "gorgonia.org/gorgonia"
)

// The cnn's convolution blocks: a 5x5 convolution with zero padding 2 and
// stride 1 (output the size of the input), then ReLU, then 2x2 max pooling
// with stride 2. convPool computes one block for one fixed batch shape as
// an implicit GEMM, with no im2col buffer:
//
// The batch is laid out per channel as one padded plane: the samples'
// images stacked vertically, each row followed by 2 zero columns and each
// image by 2 zero rows (the zeros after one image serve as the padding
// before the next). On that grid, the input under tap (ky, kx) of the
// kernel at every output position is the plane shifted by a constant,
// (ky−2)·rowStride + (kx−2), so row (c, ky, kx) of the im2col matrix is the
// plane of channel c read at an offset, and the convolution is one product
// of the weights with those shifted rows (kern4x16off), computed on the
// whole grid (the outputs on padding positions are dropped). The weight
// gradient is a dot product of each output channel's gradient plane with
// each shifted input plane (dotGemm over the grid), and the input gradient
// is the same implicit product with the weights flipped and transposed,
// read from the padded plane of output gradients (zero on padding
// positions), so there is no col2im either. Only 15 % (28x28) and 31 %
// (14x14) of the arithmetic is spent on padding positions.
//
// The element-wise passes (laying out, pooling, scattering gradients) run in
// parallel over samples and the products over columns: each goroutine
// writes only its own outputs, and every sum runs in a fixed order, so the
// results do not depend on the number of cores.
const (
	convK   = 5 // kernel height and width
	convPad = 2 // zero padding on each side
	convKK  = convK * convK
)

// convPool is the state of one convolution block of a given batch shape:
// the buffers of the forward pass that the backward pass reads, and the
// outputs of both. It belongs to one graph (one tape machine) and is not
// safe for concurrent use.
type convPool struct {
	n, c, h, w, o int // batch, input channels, input height and width, output channels
	hp, wp        int // pooled height and width
	// group is how many samples one pass covers. A training block covers
	// the whole batch (the backward pass reads the forward's planes); an
	// evaluation block works through the batch in groups so its buffers
	// stay small.
	group  int
	train  bool
	needDX bool // compute the gradient with respect to the input

	// Grid geometry for group samples: row stride rs = w+2, image stride
	// h+2 rows, grid of g positions (gp rounded up to the kernel's 16
	// columns), planes of plane floats with the grid at offset lead.
	rs, g, gp, lead, plane int
	op4, cp4               int // o and c rounded up to 4 (kernel rows)

	xpad []float32 // c planes: the input on the grid, zero on padding
	offX []int     // per im2col row (c, ky, kx): where it starts in xpad, relative to the grid
	z    []float32 // op4 × gp: the convolution on the grid
	win  []int8    // per pooled output: which of the 2x2 inputs won (0-3), 4 when ReLU clipped it
	out  []float32 // n × o × hp × wp

	dzpad []float32 // o planes: gradient of z on the grid, zero on padding
	offZ  []int     // per row (o, ky, kx) of the flipped product: where it starts in dzpad
	wflip []float32 // the flipped, transposed weights (c × o·25)
	dxg   []float32 // cp4 × gp: gradient of the input on the grid
	dw    []float32 // o × c × 5 × 5
	dx    []float32 // n × c × h × w
	apack []float32 // packed panels of the weights, or of wflip (see implicitGemm)
}

// evalGroup is how many samples an evaluation block convolves per pass.
const evalGroup = 64

func roundUp(x, m int) int { return (x + m - 1) / m * m }

func newConvPool(n, c, h, w, o int, train, needDX bool) (*convPool, error) {
	if h%2 != 0 || w%2 != 0 {
		return nil, fmt.Errorf("conv block: input %dx%d is not even (2x2 pooling)", h, w)
	}
	l := &convPool{n: n, c: c, h: h, w: w, o: o, hp: h / 2, wp: w / 2, train: train, needDX: needDX && train}
	l.group = n
	if !train {
		l.group = min(n, evalGroup)
	}
	l.rs = w + convPad
	l.g = l.group * (h + convPad) * l.rs
	l.gp = roundUp(l.g, gemmNR)
	// Reads reach 2 rows and 2 columns before the grid and after its last
	// (rounded-up) column.
	reach := convPad*l.rs + convPad
	l.lead = roundUp(reach, 8)
	l.plane = roundUp(l.lead+l.gp+reach, 8)
	l.op4, l.cp4 = roundUp(o, 4), roundUp(c, 4)
	if int64(max(l.op4, l.cp4, c))*int64(l.plane) > 1<<31-1 || int64(n)*int64(o*h*w) > 1<<31-1 {
		return nil, fmt.Errorf("conv block: batch %d of %dx%dx%d is too large", n, c, h, w)
	}
	l.xpad = make([]float32, c*l.plane)
	l.offX = make([]int, c*convKK)
	for ci := 0; ci < c; ci++ {
		for ky := 0; ky < convK; ky++ {
			for kx := 0; kx < convK; kx++ {
				l.offX[ci*convKK+ky*convK+kx] = ci*l.plane + l.lead + (ky-convPad)*l.rs + (kx - convPad)
			}
		}
	}
	l.z = make([]float32, l.op4*l.gp)
	l.apack = make([]float32, max(l.op4*c, l.cp4*o)*convKK)
	l.out = make([]float32, n*o*l.hp*l.wp)
	if train {
		l.win = make([]int8, n*o*l.hp*l.wp)
		l.dzpad = make([]float32, o*l.plane)
		l.dw = make([]float32, o*c*convKK)
		if l.needDX {
			l.offZ = make([]int, o*convKK)
			for oi := 0; oi < o; oi++ {
				for ky := 0; ky < convK; ky++ {
					for kx := 0; kx < convK; kx++ {
						l.offZ[oi*convKK+ky*convK+kx] = oi*l.plane + l.lead + (ky-convPad)*l.rs + (kx - convPad)
					}
				}
			}
			l.wflip = make([]float32, c*o*convKK)
			l.dxg = make([]float32, l.cp4*l.gp)
			l.dx = make([]float32, n*c*h*w)
		}
	}
	return l, nil
}

// parallel runs f over [0, n) split into one contiguous piece per core.
func parallel(n int, f func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		lo, hi := k*n/workers, (k+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// gridPos is where row y, column x of sample s sits on the grid.
func (l *convPool) gridPos(s, y, x int) int { return (s*(l.h+convPad)+y)*l.rs + x }

// forward computes out = maxpool(relu(conv(x, wt))) for the whole batch.
func (l *convPool) forward(x, wt []float32) {
	hw := l.h * l.w
	ck := l.c * convKK
	for g0 := 0; g0 < l.n; g0 += l.group {
		gn := min(l.group, l.n-g0)
		if gn < l.group {
			// A short last group: clear the samples it does not fill, so
			// the grid past them holds zeros, not the previous group.
			for ci := 0; ci < l.c; ci++ {
				clear(l.xpad[ci*l.plane+l.lead+l.gridPos(gn, 0, 0) : ci*l.plane+l.lead+l.g])
			}
		}
		parallel(gn, func(lo, hi int) {
			for s := lo; s < hi; s++ {
				img := x[(g0+s)*l.c*hw : (g0+s+1)*l.c*hw]
				for ci := 0; ci < l.c; ci++ {
					base := ci*l.plane + l.lead
					for y := 0; y < l.h; y++ {
						p := base + l.gridPos(s, y, 0)
						copy(l.xpad[p:p+l.w], img[(ci*l.h+y)*l.w:])
					}
				}
			}
		})
		l.implicitGemm(l.o, ck, wt, l.xpad, l.offX, l.z)
		parallel(gn, func(lo, hi int) {
			for s := lo; s < hi; s++ {
				l.pool(s, g0+s)
			}
		})
	}
}

// implicitGemm computes c (m × gp, leading dimension gp) = A·B where A is
// m × k, row-major, and row p of B is src[off[p]:] on the grid. With the
// assembly kernels, A is packed and grid columns are split among cores;
// without them B is written out (im2col) and handed to gorgonia's BLAS.
func (l *convPool) implicitGemm(m, k int, a, src []float32, off []int, c []float32) {
	if !haveKernel {
		bBuf := getBuf(k * l.gp)
		defer gemmBufs.Put(bBuf)
		b := *bBuf
		parallel(k, func(lo, hi int) {
			for p := lo; p < hi; p++ {
				copy(b[p*l.gp:(p+1)*l.gp], src[off[p]:])
			}
		})
		G.WhichBLAS().Sgemm(blas.NoTrans, blas.NoTrans, m, l.gp, k, 1, a, k, b, l.gp, 0, c, l.gp)
		return
	}
	ap := l.apack[:roundUp(m, gemmMR)*k]
	packA(false, m, k, a, k, ap)
	panels := l.gp / gemmNR
	parallel(panels, func(lo, hi int) {
		for jp := lo; jp < hi; jp++ {
			j0 := jp * gemmNR
			for ip := 0; ip < len(ap)/(gemmMR*k); ip++ {
				kern4x16off(k, &ap[ip*gemmMR*k], &src[j0], &off[0], &c[ip*gemmMR*l.gp+j0], l.gp)
			}
		}
	})
}

// pool reads sample s of the grid output z and writes sample n of out: the
// ReLU of the max of each 2x2 window, recording the winner.
func (l *convPool) pool(s, n int) {
	wp := l.wp
	np := l.hp * wp
	for o := 0; o < l.o; o++ {
		zb := l.z[o*l.gp:]
		ob := l.out[(n*l.o+o)*np : (n*l.o+o+1)*np]
		var wb []int8
		if l.train {
			wb = l.win[(n*l.o+o)*np : (n*l.o+o+1)*np]
		}
		for py := 0; py < l.hp; py++ {
			p0 := l.gridPos(s, 2*py, 0)
			r0 := zb[p0 : p0+l.w]
			r1 := zb[p0+l.rs : p0+l.rs+l.w]
			orow := ob[py*wp : py*wp+wp]
			for px := range orow {
				// ReLU first, then the max: for values >= 0 the float bits
				// order like the values, so the comparisons are integer
				// arithmetic with no branch to mispredict. The first of
				// equal maxima wins (a tournament a|b, c|d, then the two).
				best01, k01 := max2(relubits(r0[2*px]), relubits(r0[2*px+1]))
				best23, k23 := max2(relubits(r1[2*px]), relubits(r1[2*px+1]))
				best, k := max2(best01, best23)
				k = k01 ^ (k01^(2+k23))&-k
				k |= 4 & -eq0(best) // ReLU clipped the window
				orow[px] = math.Float32frombits(best)
				if wb != nil {
					wb[py*wp+px] = int8(k & 7)
				}
			}
		}
	}
}

// relubits is the bits of max(v, 0) (0 for -0 and negative values).
func relubits(v float32) uint32 {
	b := math.Float32bits(v)
	return b &^ uint32(int32(b)>>31)
}

// max2 returns the larger of two values below 2³¹ and 1 if it is b
// (strictly larger), 0 if a, without branches.
func max2(a, b uint32) (uint32, uint32) {
	gt := uint32(uint64(int64(a)-int64(b)) >> 63)
	return a ^ (a^b)&-gt, gt
}

// eq0 is 1 if v is 0, else 0, without branches.
func eq0(v uint32) uint32 { return uint32((uint64(v) - 1) >> 63) }

// scatter writes sample n's part of the gradient grid dzpad: each pooled
// gradient goes to its window's winner, zero to the other three (and to
// all four when ReLU clipped the window). Padding positions stay zero.
func (l *convPool) scatter(grad []float32, n int) {
	wp := l.wp
	np := l.hp * wp
	for o := 0; o < l.o; o++ {
		db := l.dzpad[o*l.plane+l.lead:]
		gb := grad[(n*l.o+o)*np : (n*l.o+o+1)*np]
		wb := l.win[(n*l.o+o)*np : (n*l.o+o+1)*np]
		for py := 0; py < l.hp; py++ {
			p0 := l.gridPos(n, 2*py, 0)
			r0 := db[p0 : p0+l.w]
			r1 := db[p0+l.rs : p0+l.rs+l.w]
			for px := 0; px < wp; px++ {
				var q [8]float32
				q[wb[py*wp+px]&7] = gb[py*wp+px]
				r0[2*px], r0[2*px+1], r1[2*px], r1[2*px+1] = q[0], q[1], q[2], q[3]
			}
		}
	}
}

// backwardW fills dw: dw[o, (c, ky, kx)] is the dot product, over the grid,
// of output channel o's gradient plane with channel c's input plane
// shifted by the tap.
func (l *convPool) backwardW() {
	ck := l.c * convKK
	dotGemm(l.o, ck, l.g, l.dzpad[l.lead:], l.plane, func(j int) []float32 {
		return l.xpad[l.offX[j] : l.offX[j]+l.g]
	}, false, l.dw, ck)
}

// backwardX fills dx: the convolution of the padded output gradient with
// the weights flipped in space and transposed in channels, on the grid.
func (l *convPool) backwardX(wt []float32) {
	ok := l.o * convKK
	// wflip[c, (o, ky, kx)] = wt[o, c, 4−ky, 4−kx]
	for c := 0; c < l.c; c++ {
		for o := 0; o < l.o; o++ {
			for t := 0; t < convKK; t++ {
				l.wflip[c*ok+o*convKK+t] = wt[(o*l.c+c)*convKK+convKK-1-t]
			}
		}
	}
	l.implicitGemm(l.c, ok, l.wflip, l.dzpad, l.offZ, l.dxg)
	hw := l.h * l.w
	parallel(l.n, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			for c := 0; c < l.c; c++ {
				for y := 0; y < l.h; y++ {
					p := c*l.gp + l.gridPos(n, y, 0)
					copy(l.dx[n*l.c*hw+(c*l.h+y)*l.w:][:l.w], l.dxg[p:p+l.w])
				}
			}
		}
	})
}
