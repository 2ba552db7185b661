package train

import (
	"fmt"
	"runtime"
	"sync"
)

// The cnn's convolution blocks: a 5x5 convolution with zero padding 2 and
// stride 1 (output the size of the input), then ReLU, then 2x2 max pooling
// with stride 2. convPool computes the block for one fixed shape as
// im2col into one contiguous buffer, one GEMM through gorgonia's BLAS for
// the whole batch, and a fused ReLU + pooling pass that records which of the
// four inputs won. The products go through gemm (sgemm.go). The backward pass scatters the upstream gradient to the
// winners, and gets the weight gradient and the input gradient from one GEMM
// each (and a col2im for the latter).
//
// The element-wise passes (im2col, pooling, scatter, col2im) run in parallel
// over the samples of the batch: each goroutine writes only its own
// samples' outputs, and every sum runs in a fixed order, so the results do
// not depend on the number of cores; gemm never splits a sum either.
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
	// group is how many samples one GEMM covers. A training block covers
	// the whole batch (its im2col buffer is needed again by the backward
	// pass); an evaluation block works through the batch in groups so its
	// buffers stay small.
	group  int
	train  bool
	needDX bool // compute the gradient with respect to the input

	cols []float32 // im2col: (c·25) × (group·h·w)
	z    []float32 // convolution output: o × (group·h·w)
	win  []int8    // per pooled output: which of the 2x2 inputs won (0-3), -1 when ReLU clipped it
	out  []float32 // n × o × hp × wp
	dz   []float32 // gradient of z: o × (n·h·w)
	dcol []float32 // gradient of cols: (c·25) × (n·h·w)
	dw   []float32 // o × c × 5 × 5
	dx   []float32 // n × c × h × w
}

// evalGroup is how many samples an evaluation block convolves per GEMM.
const evalGroup = 64

func newConvPool(n, c, h, w, o int, train, needDX bool) (*convPool, error) {
	if h%2 != 0 || w%2 != 0 {
		return nil, fmt.Errorf("conv block: input %dx%d is not even (2x2 pooling)", h, w)
	}
	l := &convPool{n: n, c: c, h: h, w: w, o: o, hp: h / 2, wp: w / 2, train: train, needDX: needDX && train}
	l.group = n
	if !train {
		l.group = min(n, evalGroup)
	}
	hw := h * w
	if int64(c*convKK)*int64(l.group*hw) > 1<<31-1 || int64(o)*int64(n*hw) > 1<<31-1 {
		return nil, fmt.Errorf("conv block: batch %d of %dx%dx%d is too large", n, c, h, w)
	}
	l.cols = make([]float32, c*convKK*l.group*hw)
	l.z = make([]float32, o*l.group*hw)
	l.out = make([]float32, n*o*l.hp*l.wp)
	if train {
		l.win = make([]int8, n*o*l.hp*l.wp)
		l.dz = make([]float32, o*n*hw)
		l.dw = make([]float32, o*c*convKK)
		if l.needDX {
			l.dcol = make([]float32, c*convKK*n*hw)
			l.dx = make([]float32, n*c*hw)
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

// forward computes out = maxpool(relu(conv(x, wt))) for the whole batch.
func (l *convPool) forward(x, wt []float32) {
	hw := l.h * l.w
	ck := l.c * convKK
	for g0 := 0; g0 < l.n; g0 += l.group {
		gn := min(l.group, l.n-g0)
		ld := gn * hw
		parallel(gn, func(lo, hi int) {
			for s := lo; s < hi; s++ {
				l.im2col(l.cols, ld, s, x[(g0+s)*l.c*hw:(g0+s+1)*l.c*hw])
			}
		})
		// z (o × ld) = wt (o × ck) · cols (ck × ld)
		gemm(false, false, l.o, ld, ck, wt, ck, l.cols, ld, false, l.z, ld)
		parallel(gn, func(lo, hi int) {
			for s := lo; s < hi; s++ {
				l.pool(ld, s, g0+s)
			}
		})
	}
}

// im2col writes the 5x5 patches of one sample (img: c × h × w) into column
// block s of cols, whose rows are (channel, ky, kx) and whose leading
// dimension is ld: cols[(c·25 + ky·5 + kx)·ld + s·h·w + y·w + x] =
// img[c, y+ky-2, x+kx-2], zero outside the image.
func (l *convPool) im2col(cols []float32, ld, s int, img []float32) {
	h, w := l.h, l.w
	hw := h * w
	for c := 0; c < l.c; c++ {
		src := img[c*hw : (c+1)*hw]
		for ky := 0; ky < convK; ky++ {
			for kx := 0; kx < convK; kx++ {
				r := c*convKK + ky*convK + kx
				dst := cols[r*ld+s*hw : r*ld+s*hw+hw]
				dx := kx - convPad
				x0, x1 := max(0, -dx), min(w, w-dx)
				for y := 0; y < h; y++ {
					row := dst[y*w : y*w+w]
					sy := y + ky - convPad
					if sy < 0 || sy >= h {
						clear(row)
						continue
					}
					clear(row[:x0])
					copy(row[x0:x1], src[sy*w+x0+dx:sy*w+x1+dx])
					clear(row[x1:])
				}
			}
		}
	}
}

// pool reads column block s of z (leading dimension ld) and writes sample n
// of out: the ReLU of the max of each 2x2 window, recording the winner.
func (l *convPool) pool(ld, s, n int) {
	hw, w, wp := l.h*l.w, l.w, l.wp
	np := l.hp * wp
	for o := 0; o < l.o; o++ {
		zb := l.z[o*ld+s*hw : o*ld+s*hw+hw]
		ob := l.out[(n*l.o+o)*np : (n*l.o+o+1)*np]
		var wb []int8
		if l.train {
			wb = l.win[(n*l.o+o)*np : (n*l.o+o+1)*np]
		}
		for py := 0; py < l.hp; py++ {
			r0 := zb[2*py*w : 2*py*w+w]
			r1 := zb[(2*py+1)*w : (2*py+1)*w+w]
			orow := ob[py*wp : py*wp+wp]
			for px := range orow {
				best, k := r0[2*px], int8(0)
				if v := r0[2*px+1]; v > best {
					best, k = v, 1
				}
				if v := r1[2*px]; v > best {
					best, k = v, 2
				}
				if v := r1[2*px+1]; v > best {
					best, k = v, 3
				}
				if !(best > 0) {
					best, k = 0, -1
				}
				orow[px] = best
				if wb != nil {
					wb[py*wp+px] = k
				}
			}
		}
	}
}

// backwardW fills dw from dz (see scatter) and the im2col buffer of the
// last forward.
func (l *convPool) backwardW() {
	ld := l.n * l.h * l.w
	ck := l.c * convKK
	// dw (o × ck) = dz (o × ld) · colsᵀ (ld × ck)
	gemm(false, true, l.o, ck, ld, l.dz, ld, l.cols, ld, false, l.dw, ck)
}

// backwardX fills dx from dz and the weights wt of the last forward.
func (l *convPool) backwardX(wt []float32) {
	ld := l.n * l.h * l.w
	ck := l.c * convKK
	// dcol (ck × ld) = wtᵀ (ck × o) · dz (o × ld)
	gemm(true, false, ck, ld, l.o, wt, ck, l.dz, ld, false, l.dcol, ld)
	parallel(l.n, func(lo, hi int) {
		for n := lo; n < hi; n++ {
			l.col2im(n)
		}
	})
}

// scatter writes sample n's part of dz: each pooled gradient goes to the
// window's winner, zero to the other three (and to all four when ReLU
// clipped the window).
func (l *convPool) scatter(grad []float32, n int) {
	hw, w, wp := l.h*l.w, l.w, l.wp
	np := l.hp * wp
	ld := l.n * hw
	for o := 0; o < l.o; o++ {
		db := l.dz[o*ld+n*hw : o*ld+n*hw+hw]
		gb := grad[(n*l.o+o)*np : (n*l.o+o+1)*np]
		wb := l.win[(n*l.o+o)*np : (n*l.o+o+1)*np]
		for py := 0; py < l.hp; py++ {
			r0 := db[2*py*w : 2*py*w+w]
			r1 := db[(2*py+1)*w : (2*py+1)*w+w]
			for px := 0; px < wp; px++ {
				r0[2*px], r0[2*px+1], r1[2*px], r1[2*px+1] = 0, 0, 0, 0
				g := gb[py*wp+px]
				switch wb[py*wp+px] {
				case 0:
					r0[2*px] = g
				case 1:
					r0[2*px+1] = g
				case 2:
					r1[2*px] = g
				case 3:
					r1[2*px+1] = g
				}
			}
		}
	}
}

// col2im sums sample n's column gradients back onto the image: the adjoint
// of im2col. Each input pixel adds its 25 terms in (ky, kx) order.
func (l *convPool) col2im(n int) {
	h, w := l.h, l.w
	hw := h * w
	ld := l.n * hw
	for c := 0; c < l.c; c++ {
		img := l.dx[(n*l.c+c)*hw : (n*l.c+c+1)*hw]
		clear(img)
		for ky := 0; ky < convK; ky++ {
			y0, y1 := max(0, convPad-ky), min(h, h+convPad-ky)
			for kx := 0; kx < convK; kx++ {
				r := c*convKK + ky*convK + kx
				src := l.dcol[r*ld+n*hw : r*ld+n*hw+hw]
				dx := kx - convPad
				x0, x1 := max(0, -dx), min(w, w-dx)
				dy := ky - convPad
				for y := y0; y < y1; y++ {
					d := img[(y+dy)*w+x0+dx : (y+dy)*w+x1+dx]
					sr := src[y*w+x0 : y*w+x1]
					for i := range d {
						d[i] += sr[i]
					}
				}
			}
		}
	}
}
