package gradient

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
)

// checkInt2 checks what a topk+int2 round trip must give for v at density:
// in every chunk exactly min(k, chunk length) coordinates are kept (or
// decode to zero), all among the chunk's k largest magnitudes, each with
// v's sign and one of the chunk's two magnitudes; and the decoded vector
// encodes to itself (decode ∘ encode is idempotent).
func checkInt2(t testing.TB, v []float32, density float64) (msg []byte, got []float32) {
	t.Helper()
	c, err := NewCodec(TopKInt2, density)
	if err != nil {
		t.Fatal(err)
	}
	msg, err = Marshal(c, v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got = make([]float32, len(v))
	if _, err := UnmarshalInto(got, msg, Limits{MaxBytes: len(msg)}); err != nil {
		t.Fatalf("decode of an encoded vector: %v", err)
	}
	size := 1 << int2ChunkLog
	kc := c.(*topKInt2).perChunk(int2ChunkLog)
	for j := 0; j*size < len(v); j++ {
		x, y := v[j*size:min(len(v), (j+1)*size)], got[j*size:min(len(v), (j+1)*size)]
		k := min(kc, len(x))
		mags := make([]float32, len(x))
		for i, a := range x {
			mags[i] = abs32(a)
		}
		kth := nthLargest(slices.Clone(mags), k-1)
		var levels []float32
		nonzero := 0
		for i, d := range y {
			if d == 0 {
				continue
			}
			nonzero++
			if mags[i] < kth {
				t.Fatalf("chunk %d: coordinate %d (|%v|) kept below the k-th largest %v", j, i, x[i], kth)
			}
			if (d < 0) != (x[i] < 0) {
				t.Fatalf("chunk %d: coordinate %d: %v decoded as %v", j, i, x[i], d)
			}
			if !slices.Contains(levels, abs32(d)) {
				levels = append(levels, abs32(d))
			}
		}
		if nonzero > k || len(levels) > 2 {
			t.Fatalf("chunk %d: %d nonzero values (k %d), %d magnitudes", j, nonzero, k, len(levels))
		}
	}
	again, err := Marshal(c, got)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	got2 := make([]float32, len(v))
	if _, err := UnmarshalInto(got2, again, Limits{}); err != nil {
		t.Fatalf("decode of the re-encoded vector: %v", err)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(got2[i]) {
			t.Fatalf("not idempotent at %d: %v, then %v", i, got[i], got2[i])
		}
	}
	return msg, got
}

func TestTopKInt2RoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 7, 4096, 4097, 101770} {
		for _, d := range []float64{0.001, 0.005, 0.01, 0.3, 1} {
			checkInt2(t, randVec(uint64(n)+1, n), d)
		}
	}
	// Ties, zeros, constant and huge values.
	checkInt2(t, make([]float32, 5000), 0.01)
	ones := make([]float32, 5000)
	for i := range ones {
		ones[i] = 1
	}
	checkInt2(t, ones, 0.01)
	huge := randVec(3, 9000)
	huge[17], huge[5000] = math.MaxFloat32, -math.MaxFloat32
	checkInt2(t, huge, 0.01)
}

// TestTopKInt2Size: one round's payload for the MLP of benchmarks/sim
// (101,770 parameters) against dense fp32, and the bits per kept value.
func TestTopKInt2Size(t *testing.T) {
	v := randVec(4, 101770)
	dense := HeaderSize + 4*len(v)
	for _, tc := range []struct {
		density  float64
		minRatio float64
	}{{0.01, 250}, {0.005, 400}, {0.0025, 650}} {
		msg, got := checkInt2(t, v, tc.density)
		kept := 0
		for _, x := range got {
			if x != 0 {
				kept++
			}
		}
		ratio := float64(dense) / float64(len(msg))
		t.Logf("density %g: %d values in %d bytes (%.1f bits each), %.0fx smaller than dense fp32", tc.density, kept, len(msg), 8*float64(len(msg))/float64(kept), ratio)
		if ratio < tc.minRatio {
			t.Errorf("density %g: %.0fx smaller than dense, want >= %.0fx", tc.density, ratio, tc.minRatio)
		}
	}
}

// TestTopKInt2ErrorFeedbackLosesNothing: with error feedback, what is sent
// over many rounds adds up to what was meant to be sent, minus a residual
// that stays bounded.
func TestTopKInt2ErrorFeedbackLosesNothing(t *testing.T) {
	c, _ := NewCodec(TopKInt2, 0.01)
	const n, rounds = 20000, 300
	ef := NewErrorFeedback(n, 0)
	want := make([]float64, n)
	sent := make([]float64, n)
	for r := 0; r < rounds; r++ {
		delta := randVec(uint64(100+r), n)
		msg, err := ef.Compress(c, delta)
		if err != nil {
			t.Fatal(err)
		}
		dec, _, err := Unmarshal(msg, Limits{Elems: n})
		if err != nil {
			t.Fatal(err)
		}
		for i := range delta {
			want[i] += float64(delta[i])
			sent[i] += float64(dec[i])
		}
	}
	var errSq, wantSq float64
	for i := range want {
		// sent + residual = want exactly, up to float32 rounding.
		if d := math.Abs(sent[i] + float64(ef.Residual()[i]) - want[i]); d > 1e-4 {
			t.Fatalf("coordinate %d: sent %v + residual %v != %v", i, sent[i], ef.Residual()[i], want[i])
		}
		errSq += (sent[i] - want[i]) * (sent[i] - want[i])
		wantSq += want[i] * want[i]
	}
	rel := math.Sqrt(errSq / wantSq)
	t.Logf("after %d rounds: residual is %.1f%% of the sum", rounds, 100*rel)
	if rel > 0.5 {
		t.Fatalf("residual %.2f of the sum: error feedback does not keep up", rel)
	}
}

// TestTopKInt2RejectsMalformedPayloads: what a hostile sender can put in a
// payload with a valid checksum.
func TestTopKInt2RejectsMalformedPayloads(t *testing.T) {
	c, _ := NewCodec(TopKInt2, 0.01)
	v := randVec(8, 5000)
	good, _ := c.Encode(nil, v)
	dst := make([]float32, len(v))
	if err := c.Decode(dst, good); err != nil {
		t.Fatal(err)
	}
	levels := 3 // offset of the first chunk's magnitudes (log, k as one varint byte, r)
	mod := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":               {nil, "too short"},
		"chunk log too small": {mod(func(b []byte) []byte { b[0] = 3; return b }), "chunk size"},
		"chunk log too large": {mod(func(b []byte) []byte { b[0] = 17; return b }), "chunk size"},
		"zero per chunk":      {mod(func(b []byte) []byte { b[1] = 0; return b }), "count per chunk"},
		"more than a chunk":   {append([]byte{4, 17}, good[2:]...), "count per chunk"},
		"rice over log":       {mod(func(b []byte) []byte { b[2] = 13; return b }), "Rice parameter"},
		"no magnitudes":       {good[:levels+3], "magnitudes"},
		"negative magnitude":  {mod(func(b []byte) []byte { b[levels+1] |= 0x80; return b }), "not finite"},
		"NaN magnitude":       {mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[levels+2:], 0x7fc0); return b }), "not finite"},
		"magnitudes reversed": {mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[levels:], 0x7f00); return b }), "ordered"},
		"trailing byte":       {append(slices.Clone(good), 0), "after the bit stream"},
		"truncated stream":    {good[:len(good)-1], ""},
		"all ones":            {append(slices.Clone(good[:levels+8]), bytes.Repeat([]byte{0xff}, 64)...), "one-bits"},
	} {
		err := c.Decode(dst, tc.b)
		if err == nil {
			t.Errorf("%s: decoded", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to mention %q", name, err, tc.want)
		}
	}
	// A position past the end of a short chunk: a 5-element vector (one
	// chunk of 5, k = 1) whose single gap is 5.
	b := []byte{12, 1, 3, 0, 0x3f, 0x80, 0x3f}
	var w bitWriter
	w.buf = b
	w.write(0, 1) // q = 0
	w.write(5, 3) // low bits: gap 5 → position 5
	w.write(0, 2) // code
	b = w.flush()
	if err := c.Decode(make([]float32, 5), b); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("position past the chunk: %v", err)
	}
	// The same with gap 4 (position 4) decodes; its 6 bits leave 2 padding
	// bits, which must be zero.
	b[len(b)-1] = 0b000_1000
	if err := c.Decode(make([]float32, 5), b); err != nil {
		t.Errorf("valid short payload: %v", err)
	}
	b[len(b)-1] |= 0x80
	if err := c.Decode(make([]float32, 5), b); err == nil || !strings.Contains(err.Error(), "padding") {
		t.Errorf("padding bit set: %v", err)
	}
}

// FuzzTopKInt2RoundTrip encodes arbitrary finite vectors at arbitrary
// densities: the bytes must decode, keep only top-k coordinates with their
// signs, and decode ∘ encode must be idempotent (see checkInt2). The
// vector is n values (up to 3 chunks) read cyclically from raw, so short
// inputs still span several chunks.
func FuzzTopKInt2RoundTrip(f *testing.F) {
	f.Add(uint16(100), uint16(2), []byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(uint16(10), uint16(9000), []byte{0x3f, 0x80, 0, 1, 0xbf, 0x80, 0, 2, 0, 0, 0, 0})
	f.Add(uint16(65535), uint16(4097), []byte{0, 0, 0, 0})
	f.Add(uint16(300), uint16(5000), []byte{1, 0, 0, 0x80, 0, 0, 0, 0}) // tiny negatives: a zero magnitude, never -0
	f.Fuzz(func(t *testing.T, dens, n uint16, raw []byte) {
		if len(raw) < 4 {
			return
		}
		v := make([]float32, int(n)%(3<<int2ChunkLog))
		for i := range v {
			j := 4 * i % (len(raw) &^ 3)
			x := math.Float32frombits(binary.LittleEndian.Uint32(raw[j:]) ^ uint32(i/(len(raw)/4))*0x9e3779b9&0x007fffff)
			if x != x || math.IsInf(float64(x), 0) {
				x = 0
			}
			v[i] = x
		}
		checkInt2(t, v, (float64(dens)+1)/65536)
	})
}
