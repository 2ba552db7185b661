package gradient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
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
)

// Names lists every codec name NewCodec accepts.
func Names() []string { return []string{Dense, FP16, Int8, TopK, TopKInt8, TopKFP16} }

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

type fp32Values struct{}

func (fp32Values) size(n int) int { return 4 * n }
func (fp32Values) put(dst []byte, v []float32) []byte {
	for _, x := range v {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
	}
	return dst
}
func (fp32Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < 4*len(dst) {
		return nil, fmt.Errorf("fp32 values: need %d bytes, have %d", 4*len(dst), len(b))
	}
	for i := range dst {
		x := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("fp32 value %d: %w", i, errNonFinite)
		}
		dst[i] = x
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
	for _, x := range v {
		dst = binary.LittleEndian.AppendUint16(dst, toHalf(max(-maxHalf, min(maxHalf, x))))
	}
	return dst
}
func (fp16Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < 2*len(dst) {
		return nil, fmt.Errorf("fp16 values: need %d bytes, have %d", 2*len(dst), len(b))
	}
	for i := range dst {
		h := binary.LittleEndian.Uint16(b[2*i:])
		if h&0x7c00 == 0x7c00 {
			return nil, fmt.Errorf("fp16 value %d: %w", i, errNonFinite)
		}
		dst[i] = fromHalf(h)
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
// (max |v| / 127) followed by the values rounded to int8 multiples of it.
type int8Values struct{}

func (int8Values) size(n int) int { return n + 4*((n+int8Block-1)/int8Block) }
func (int8Values) put(dst []byte, v []float32) []byte {
	for start := 0; start < len(v); start += int8Block {
		blk := v[start:min(start+int8Block, len(v))]
		var mx float32
		for _, x := range blk {
			mx = max(mx, abs32(x))
		}
		scale := mx / 127
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(scale))
		inv := float32(0)
		if scale > 0 {
			inv = 1 / scale
		}
		for _, x := range blk {
			q := x * inv
			// round half away from zero; |q| <= 127 by construction
			if q >= 0 {
				q += 0.5
			} else {
				q -= 0.5
			}
			dst = append(dst, byte(int8(max(-127, min(127, q)))))
		}
	}
	return dst
}
func (c int8Values) get(dst []float32, b []byte) ([]byte, error) {
	if len(b) < c.size(len(dst)) {
		return nil, fmt.Errorf("int8 values: need %d bytes, have %d", c.size(len(dst)), len(b))
	}
	for start := 0; start < len(dst); start += int8Block {
		scale := math.Float32frombits(binary.LittleEndian.Uint32(b))
		// A scale above maxInt8Scale would turn ±127 into ±Inf.
		if !(scale >= 0 && scale <= maxInt8Scale) {
			return nil, fmt.Errorf("int8 block at %d: scale %v is not in [0, %v]", start, scale, float32(maxInt8Scale))
		}
		b = b[4:]
		blk := dst[start:min(start+int8Block, len(dst))]
		for i := range blk {
			blk[i] = float32(int8(b[i])) * scale
		}
		b = b[len(blk):]
	}
	return b, nil
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
