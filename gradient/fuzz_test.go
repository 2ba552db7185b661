package gradient

import (
	"math"
	"slices"
	"testing"
)

// exactCodecs re-encode a decoded vector to itself: their values are
// stored as given (fp32) or the decoded values are exactly representable
// in their format (fp16), and top-k at density 1 keeps every coordinate.
var exactCodecs = map[string]bool{Dense: true, FP16: true, TopK: true, TopKFP16: true}

// reencodes checks the round-trip property of a decoded vector v under the
// codec named: Marshal, then UnmarshalInto gives back v exactly for exact
// codecs, and within one quantisation step of its int8 block (max|x| / 127
// over the block) for the int8 ones. Top-k is re-encoded at density 1: the
// decoded vector has at most k nonzeros, so nothing is dropped.
func reencodes(t *testing.T, name string, v []float32) {
	t.Helper()
	c, err := NewCodec(name, 1)
	if err != nil {
		t.Fatalf("codec %s: %v", name, err)
	}
	msg, err := Marshal(c, v)
	if err != nil {
		t.Fatalf("%s: a decoded vector does not re-encode: %v", name, err)
	}
	back := make([]float32, len(v))
	if _, err := UnmarshalInto(back, msg, Limits{}); err != nil {
		t.Fatalf("%s: a re-encoded vector does not decode: %v", name, err)
	}
	if name == TopKInt2 {
		// Two magnitudes per chunk: re-encoding requantises, so its
		// property is FuzzTopKInt2RoundTrip's (support, signs, idempotence
		// at the density it was sent with).
		return
	}
	if exactCodecs[name] {
		if !slices.Equal(back, v) {
			t.Fatalf("%s: decoded %v, re-encoded and decoded %v", name, v, back)
		}
		return
	}
	// int8 and topk+int8: top-k at density 1 keeps every coordinate in
	// order, so both quantise the same blocks of int8Block values.
	for lo := 0; lo < len(v); lo += int8Block {
		blk := v[lo:min(lo+int8Block, len(v))]
		var mx float32
		for _, x := range blk {
			mx = max(mx, abs32(x))
		}
		step := float64(mx) / 127 * (1 + 1e-6)
		if tinyInt8Block(mx) {
			step = float64(mx) // sent as zeros: TestInt8TinyBlockKeepsItsValues
		}
		for i, x := range blk {
			if d := math.Abs(float64(back[lo+i]) - float64(x)); d > step {
				t.Fatalf("%s: coordinate %d: %v re-encoded as %v, more than one step %v", name, lo+i, x, back[lo+i], step)
			}
		}
	}
}

// tinyInt8Block reports whether an int8 block with largest magnitude mx
// has a scale (mx / 127) whose inverse overflows float32: the encoder sends
// such a block as zeros. See TestInt8TinyBlockKeepsItsValues.
func tinyInt8Block(mx float32) bool {
	return mx > 0 && math.IsInf(float64(1/(mx/127)), 0)
}

// TestInt8TinyBlockKeepsItsValues: found by FuzzCodecDecode. A block whose
// largest magnitude is below about 3.7e-37 (127 / MaxFloat32) has a scale
// whose inverse overflows: int8Values.put computed x × Inf, so zeros (NaN)
// and positive values came out as -127 × scale — a sign flip. Such a block
// is now sent as zeros: no sign flips, an error below 3.7e-37.
func TestInt8TinyBlockKeepsItsValues(t *testing.T) {
	v := make([]float32, int8Block)
	v[0] = 2e-37
	for _, name := range []string{Int8, TopKInt8} {
		c, _ := NewCodec(name, 1)
		msg, err := Marshal(c, v)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := Unmarshal(msg, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if back[0] != 0 || back[1] != 0 {
			t.Errorf("%s encodes [2e-37, 0, ...] as [%v, %v, ...], want zeros", name, back[0], back[1])
		}

	}
}

// FuzzUnmarshal feeds arbitrary bytes to the wire decoder: it must return an
// error or a vector of the expected length, never panic or over-allocate;
// what it decodes is finite, the allocating and in-place decoders agree,
// and it re-encodes under its own codec to itself (reencodes).
func FuzzUnmarshal(f *testing.F) {
	v := randVec(9, 300)
	for _, name := range Names() {
		c, _ := NewCodec(name, 0.05)
		msg, _ := Marshal(c, v)
		f.Add(msg)
	}
	f.Add([]byte("SWGV"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dst := make([]float32, 300)
		h, err := UnmarshalInto(dst, b, Limits{MaxBytes: 1 << 16})
		alloc, h2, err2 := Unmarshal(b, Limits{MaxElems: 1 << 12, MaxBytes: 1 << 16})
		if err != nil {
			if err2 == nil && h2.Elems == len(dst) {
				t.Fatalf("Unmarshal decodes what UnmarshalInto refuses (%v)", err)
			}
			return
		}
		for _, x := range dst {
			if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
				t.Fatalf("decoded %v", x)
			}
		}
		if err2 != nil || h2 != h || !slices.Equal(alloc, dst) {
			t.Fatalf("Unmarshal (%v) and UnmarshalInto disagree", err2)
		}
		reencodes(t, h.Codec, dst)
	})
}

// FuzzCodecDecode feeds arbitrary payloads (no header, no checksum: what a
// hostile sender controls fully) to every codec's decoder; what decodes is
// finite and re-encodes to itself (reencodes).
func FuzzCodecDecode(f *testing.F) {
	v := randVec(10, 64)
	for i, name := range Names() {
		c, _ := NewCodec(name, 0.1)
		b, _ := c.Encode(nil, v)
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		names := Names()
		name := names[int(which)%len(names)]
		c, _ := NewCodec(name, 0.1)
		dst := make([]float32, 64)
		if err := c.Decode(dst, b); err != nil {
			return
		}
		for _, x := range dst {
			if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
				t.Fatalf("decoded %v", x)
			}
		}
		reencodes(t, name, dst)
	})
}
