package gradient

import (
	"math"
	"testing"
)

// FuzzUnmarshal feeds arbitrary bytes to the wire decoder: it must return an
// error or a vector of the expected length, never panic or over-allocate.
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
		if _, err := UnmarshalInto(dst, b, Limits{MaxBytes: 1 << 16}); err == nil {
			for _, x := range dst {
				if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
					t.Fatalf("decoded %v", x)
				}
			}
		}
		Unmarshal(b, Limits{MaxElems: 1 << 12, MaxBytes: 1 << 16})
	})
}

// FuzzCodecDecode feeds arbitrary payloads (no header, no checksum: what a
// hostile sender controls fully) to every codec's decoder.
func FuzzCodecDecode(f *testing.F) {
	v := randVec(10, 64)
	for i, name := range Names() {
		c, _ := NewCodec(name, 0.1)
		b, _ := c.Encode(nil, v)
		f.Add(uint8(i), b)
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		names := Names()
		c, _ := NewCodec(names[int(which)%len(names)], 0.1)
		dst := make([]float32, 64)
		if err := c.Decode(dst, b); err == nil {
			for _, x := range dst {
				if x != x || x > math.MaxFloat32 || x < -math.MaxFloat32 {
					t.Fatalf("decoded %v", x)
				}
			}
		}
	})
}
