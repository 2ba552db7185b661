package gradient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Codec compresses a flat vector into bytes and back. Encode appends to dst
// and returns the extended slice; Decode overwrites all of dst, whose length
// is the vector length the caller expects, and fails on any byte that does
// not fit (never panics, never allocates in proportion to what the bytes
// claim).
type Codec interface {
	Name() string
	Encode(dst []byte, v []float32) ([]byte, error)
	Decode(dst []float32, b []byte) error
}

// Codec names, as written in a swarm config.
const (
	Dense    = "dense"
	FP16     = "fp16"
	Int8     = "int8"
	TopK     = "topk"
	TopKInt8 = "topk+int8"
	TopKFP16 = "topk+fp16"
	// TopKInt2 is chunk-wise top-k with 2-bit values (see topKInt2).
	TopKInt2 = "topk+int2"
)

// Names lists every codec name NewCodec accepts.
func Names() []string { return []string{Dense, FP16, Int8, TopK, TopKInt8, TopKFP16, TopKInt2} }

// NewCodec returns the codec name stands for; density (in (0, 1]) is the
// fraction of coordinates the top-k codecs keep.
func NewCodec(name string, density float64) (Codec, error) {
	base, sparse := strings.CutPrefix(name, "topk")
	if sparse {
		if !(density > 0 && density <= 1) {
			return nil, fmt.Errorf("codec %s: density must be in (0, 1], got %v", name, density)
		}
		var vals valueCodec
		switch base {
		case "":
			vals = fp32Values{}
		case "+int8":
			vals = int8Values{}
		case "+fp16":
			vals = fp16Values{}
		case "+int2":
			return &topKInt2{name: name, density: density}, nil
		default:
			return nil, fmt.Errorf("codec %q: unknown (want one of %v)", name, Names())
		}
		return &topK{name: name, density: density, vals: vals}, nil
	}
	switch name {
	case Dense:
		return denseCodec{name, fp32Values{}}, nil
	case FP16:
		return denseCodec{name, fp16Values{}}, nil
	case Int8:
		return denseCodec{name, int8Values{}}, nil
	}
	return nil, fmt.Errorf("codec %q: unknown (want one of %v)", name, Names())
}

// valueCodec encodes a list of values whose count the decoder already knows.
type valueCodec interface {
	size(n int) int
	put(dst []byte, v []float32) []byte
	// get decodes exactly len(dst) values from the front of b and returns the rest.
	get(dst []float32, b []byte) ([]byte, error)
}

var errNonFinite = errors.New("value is NaN or infinite")

// chunks runs f over [0, n) split into one piece per core when n is large
// enough to pay for the goroutines (pieces are multiples of align, so a
// piece never splits an int8 block), and returns the error of the lowest
// piece that failed. Each piece writes only its own part of the output, so
// the bytes do not depend on the number of cores.
func chunks(n, align int, f func(lo, hi int) error) error {
	workers := 1
	if n >= parallelMin {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers == 1 {
		return f(0, n)
	}
	per := ((n+workers-1)/workers + align - 1) / align * align
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers && w*per < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = f(w*per, min((w+1)*per, n))
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// grow extends dst by n bytes and returns the extended slice and the new part.
func grow(dst []byte, n int) ([]byte, []byte) {
	dst = slices.Grow(dst, n)
	out := dst[len(dst) : len(dst)+n]
	return dst[:len(dst)+n], out
}

type fp32Values struct{}

func (fp32Values) size(n int) int { return 4 * n }
func (fp32Values) put(dst []byte, v []float32) []byte {
	dst, out := grow(dst, 4*len(v))
	chunks(len(v), 1, func(lo, hi int) error {
		for i, x := range v[lo:hi] {
			binary.LittleEndian.PutUint32(out[4*(lo+i):], math.Float32bits(x))
		}
		return nil
	})
	return dst
}
func (fp32Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < 4*len(dst) {
		return nil, fmt.Errorf("fp32 values: need %d bytes, have %d", 4*len(dst), len(b))
	}
	err := chunks(len(dst), 1, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			u := binary.LittleEndian.Uint32(b[4*i:])
			if u&^(1<<31) >= 0x7f800000 {
				return fmt.Errorf("fp32 value %d: %w", i, errNonFinite)
			}
			dst[i] = math.Float32frombits(u)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b[4*len(dst):], nil
}

type fp16Values struct{}

// maxHalf is the largest finite binary16 value.
const maxHalf = 65504

func (fp16Values) size(n int) int { return 2 * n }

// put saturates values beyond the half range to ±65504 rather than writing
// an infinity the decoder would refuse; error feedback carries the excess.
func (fp16Values) put(dst []byte, v []float32) []byte {
	dst, out := grow(dst, 2*len(v))
	chunks(len(v), 1, func(lo, hi int) error {
		for i, x := range v[lo:hi] {
			binary.LittleEndian.PutUint16(out[2*(lo+i):], toHalf(max(-maxHalf, min(maxHalf, x))))
		}
		return nil
	})
	return dst
}
func (fp16Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < 2*len(dst) {
		return nil, fmt.Errorf("fp16 values: need %d bytes, have %d", 2*len(dst), len(b))
	}
	err := chunks(len(dst), 1, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			h := binary.LittleEndian.Uint16(b[2*i:])
			if h&0x7c00 == 0x7c00 {
				return fmt.Errorf("fp16 value %d: %w", i, errNonFinite)
			}
			dst[i] = fromHalf(h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b[2*len(dst):], nil
}

// int8Block is how many values share one float32 scale: 256 keeps the
// scale overhead at 1.6 % of the int8 bytes while a block's range still
// follows the local magnitude of the vector.
const int8Block = 256

// maxInt8Scale is the largest scale whose ±127 multiples stay finite; an
// encoder never writes more (its scale is max|v|/127 of finite values).
const maxInt8Scale = math.MaxFloat32 / 127

// int8Values stores each block of int8Block values as a float32 scale
// (max |v| / 127) followed by the values rounded to int8 multiples of it,
// so block b starts at byte b·(4+int8Block).
type int8Values struct{}

func (int8Values) size(n int) int { return n + 4*((n+int8Block-1)/int8Block) }
func (c int8Values) put(dst []byte, v []float32) []byte {
	dst, out := grow(dst, c.size(len(v)))
	chunks(len(v), int8Block, func(lo, hi int) error {
		for start := lo; start < hi; start += int8Block {
			blk := v[start:min(start+int8Block, hi)]
			o := out[start/int8Block*(4+int8Block):]
			var mx uint32 // max |x| compared as bits: finite magnitudes order like their bits
			for _, x := range blk {
				mx = max(mx, math.Float32bits(x)&^(1<<31))
			}
			scale := math.Float32frombits(mx) / 127
			inv := float32(0)
			if scale > 0 {
				inv = 1 / scale
			}
			if math.IsInf(float64(inv), 0) {
				// Below about 3.7e-37 the inverse overflows and x × Inf
				// would flip signs (NaN for zeros): send the block as
				// zeros (scale 0); error feedback keeps what is dropped.
				scale, inv = 0, 0
			}
			binary.LittleEndian.PutUint32(o, math.Float32bits(scale))
			q := o[4 : 4+len(blk)]
			for i, x := range blk {
				y := x * inv
				// Round half away from zero: add ±0.5 with y's sign, truncate.
				half := math.Float32frombits(0x3f000000 | math.Float32bits(y)&(1<<31))
				r := int32(y + half)
				// |y| <= 127 up to rounding of inv; clamp in integers.
				r = max(-127, min(127, r))
				q[i] = byte(int8(r))
			}
		}
		return nil
	})
	return dst
}
func (c int8Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < c.size(len(dst)) {
		return nil, fmt.Errorf("int8 values: need %d bytes, have %d", c.size(len(dst)), len(b))
	}
	err := chunks(len(dst), int8Block, func(lo, hi int) error {
		for start := lo; start < hi; start += int8Block {
			o := b[start/int8Block*(4+int8Block):]
			scale := math.Float32frombits(binary.LittleEndian.Uint32(o))
			// A scale above maxInt8Scale would turn ±127 into ±Inf.
			if !(scale >= 0 && scale <= maxInt8Scale) {
				return fmt.Errorf("int8 block at %d: scale %v is not in [0, %v]", start, scale, float32(maxInt8Scale))
			}
			blk := dst[start:min(start+int8Block, hi)]
			q := o[4 : 4+len(blk)]
			for i, x := range q {
				blk[i] = float32(int8(x)) * scale
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b[c.size(len(dst)):], nil
}

// denseCodec encodes every coordinate with a value codec.
type denseCodec struct {
	name string
	vals valueCodec
}

func (c denseCodec) Name() string { return c.name }
func (c denseCodec) Encode(dst []byte, v []float32) ([]byte, error) {
	if err := checkFinite(v); err != nil {
		return nil, err
	}
	return c.vals.put(dst, v), nil
}
func (c denseCodec) Decode(dst []float32, b []byte) error {
	if len(b) != c.vals.size(len(dst)) {
		return fmt.Errorf("%s: %d bytes for %d values, want %d", c.name, len(b), len(dst), c.vals.size(len(dst)))
	}
	_, err := c.vals.get(dst, b)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	return nil
}

func checkFinite(v []float32) error {
	if i := firstNonFinite(v); i >= 0 {
		return fmt.Errorf("encode: coordinate %d is %v", i, v[i])
	}
	return nil
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// MaxKept is at most how many coordinates an encoding of n values by the
// codec name at density keeps (its nonzero coordinates can be fewer: a kept
// value may quantise to 0): K(n) for top-k, the per-chunk counts summed for
// topk+int2, n for the dense codecs. Tier 1 bounds a payload's support
// with it, so a peer assigned a lower density cannot send more.
func MaxKept(name string, density float64, n int) (int, error) {
	c, err := NewCodec(name, density)
	if err != nil {
		return 0, err
	}
	switch c := c.(type) {
	case *topK:
		return c.K(n), nil
	case *topKInt2:
		size := 1 << int2ChunkLog
		kc := c.perChunk(int2ChunkLog)
		return n/size*kc + min(kc, n%size), nil
	}
	return n, nil
}
