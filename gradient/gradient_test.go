package gradient

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func randVec(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.01)
	}
	return v
}

func TestCodecsRoundTripWithinTheirPrecision(t *testing.T) {
	v := randVec(1, 10000)
	for _, tc := range []struct {
		name string
		tol  float64 // max |decoded - v| relative to max |v| on kept coordinates
	}{{Dense, 0}, {FP16, 1e-3}, {Int8, 1.0 / 127}, {TopK, 0}, {TopKInt8, 1.0 / 127}, {TopKFP16, 1e-3}} {
		c, err := NewCodec(tc.name, 0.05)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := Marshal(c, v)
		if err != nil {
			t.Fatal(err)
		}
		got, h, err := Unmarshal(msg, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.Codec != tc.name || len(got) != len(v) {
			t.Fatalf("%s: header %+v", tc.name, h)
		}
		var mx float64
		for _, x := range v {
			mx = math.Max(mx, math.Abs(float64(x)))
		}
		kept := 0
		for i := range v {
			if got[i] == 0 && strings.HasPrefix(tc.name, "topk") {
				continue
			}
			kept++
			if d := math.Abs(float64(got[i] - v[i])); d > tc.tol*mx+1e-12 {
				t.Fatalf("%s: coordinate %d: %v decoded as %v", tc.name, i, v[i], got[i])
			}
		}
		if strings.HasPrefix(tc.name, "topk") && kept != 500 {
			t.Fatalf("%s: kept %d coordinates, want 500", tc.name, kept)
		}
	}
}

func TestHalfConversion(t *testing.T) {
	for _, tc := range []struct {
		f float32
		h uint16
	}{{0, 0}, {1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {1e6, 0x7c00}, {5.960464477539063e-08, 0x0001}, {0.333251953125, 0x3555}} {
		if got := toHalf(tc.f); got != tc.h {
			t.Errorf("toHalf(%v) = %04x, want %04x", tc.f, got, tc.h)
		}
		if tc.h != 0x7c00 {
			if got := fromHalf(tc.h); got != tc.f {
				t.Errorf("fromHalf(%04x) = %v, want %v", tc.h, got, tc.f)
			}
		}
	}
	// Every finite half survives half -> float -> half.
	for h := 0; h < 1<<16; h++ {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := toHalf(fromHalf(uint16(h))); got != uint16(h) {
			t.Fatalf("half %04x round-trips to %04x", h, got)
		}
	}
}

// TestSelectTopKIsExact compares the sampled selection with a full sort,
// including vectors full of ties and ones built to fool the sample.
func TestSelectTopKIsExact(t *testing.T) {
	ref := func(v []float32, k int) []int32 {
		idx := make([]int32, len(v))
		for i := range idx {
			idx[i] = int32(i)
		}
		slices.SortStableFunc(idx, func(a, b int32) int { return cmp.Compare(abs32(v[b]), abs32(v[a])) })
		out := slices.Clone(idx[:k])
		slices.Sort(out)
		return out
	}
	ties := make([]float32, 100000)
	for i := range ties {
		ties[i] = float32(i % 3)
	}
	spiky := make([]float32, 300000) // mass far from the sampled strides
	for i := 1; i < len(spiky); i += 97 {
		spiky[i] = float32(i)
	}
	for name, v := range map[string][]float32{"random": randVec(2, 300000), "ties": ties, "spiky": spiky, "small": randVec(3, 10)} {
		for _, k := range []int{1, 7, len(v) / 100, len(v) / 3, len(v)} {
			if k == 0 {
				continue
			}
			got, want := SelectTopK(v, k), ref(v, k)
			if !slices.Equal(got, want) {
				t.Fatalf("%s k=%d: selection differs from a full sort (%d vs %d entries)", name, k, len(got), len(want))
			}
		}
	}
}

func TestTopKInt8IsOver150xSmallerThanDense(t *testing.T) {
	v := randVec(4, 1<<20)
	dense, _ := NewCodec(Dense, 1)
	sparse, _ := NewCodec(TopKInt8, 0.01)
	d, _ := Marshal(dense, v)
	s, _ := Marshal(sparse, v)
	ratio := float64(len(d)) / float64(len(s))
	t.Logf("dense %d bytes, topk+int8 at 1%% %d bytes: %.1fx", len(d), len(s), ratio)
	if ratio < 150 {
		t.Fatalf("ratio %.1f < 150", ratio)
	}
}

func TestHostileBytesGiveErrors(t *testing.T) {
	v := randVec(5, 4096)
	for _, name := range Names() {
		c, _ := NewCodec(name, 0.02)
		msg, _ := Marshal(c, v)
		dst := make([]float32, len(v))
		// Truncated at every length.
		for n := 0; n < len(msg); n += 1 + len(msg)/200 {
			if _, err := UnmarshalInto(dst, msg[:n], Limits{}); err == nil {
				t.Fatalf("%s: truncated to %d bytes decoded", name, n)
			}
		}
		// Oversized: over the byte cap, and a vector longer than the model.
		if _, err := UnmarshalInto(dst, msg, Limits{MaxBytes: len(msg) - 1}); err == nil || !strings.Contains(err.Error(), "over the limit") {
			t.Fatalf("%s: oversized message: %v", name, err)
		}
		if _, err := UnmarshalInto(make([]float32, 100), msg, Limits{}); err == nil || !strings.Contains(err.Error(), "the model has 100") {
			t.Fatalf("%s: wrong length: %v", name, err)
		}
		// Every single bit flip is caught (checksum or header checks).
		for bit := 0; bit < 8*len(msg); bit += 1 + 8*len(msg)/500 {
			bad := slices.Clone(msg)
			bad[bit/8] ^= 1 << (bit % 8)
			if _, err := UnmarshalInto(dst, bad, Limits{}); err == nil {
				t.Fatalf("%s: bit %d flipped, still decoded", name, bit)
			}
		}
	}
}

// TestPayloadChecksRejectWhatTheChecksumCannot exercises the codec-level
// validation directly (a hostile sender computes a valid checksum).
func TestPayloadChecksRejectWhatTheChecksumCannot(t *testing.T) {
	c, _ := NewCodec(TopK, 0.5)
	dst := make([]float32, 4)
	for name, b := range map[string][]byte{
		"count over n":         {9},
		"index out of range":   {1, 7, 0, 0, 0x80, 0x3f},
		"trailing bytes":       {1, 0, 0, 0, 0x80, 0x3f, 0},
		"NaN value":            {1, 0, 0, 0, 0xc0, 0x7f},
		"overlong varint":      {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"count over the bytes": {4, 0},
	} {
		if err := c.Decode(dst, b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	i8, _ := NewCodec(Int8, 1)
	if err := i8.Decode(make([]float32, 2), []byte{0, 0, 0xc0, 0x7f, 1, 1}); err == nil {
		t.Error("int8 with a NaN scale decoded")
	}
	// A finite scale so large that 127 of it overflows to +Inf.
	huge := binary.LittleEndian.AppendUint32(nil, math.Float32bits(math.MaxFloat32/2))
	if err := i8.Decode(make([]float32, 2), append(huge, 127, 1)); err == nil {
		t.Error("int8 with an overflowing scale decoded")
	}
	// A well-formed header (valid checksum) that claims a long dense vector
	// for a short payload is refused before anything is allocated.
	d, _ := NewCodec(Dense, 1)
	msg, _ := Marshal(d, []float32{1, 2})
	binary.LittleEndian.PutUint32(msg[8:], 1<<24)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, _, err := Unmarshal(msg, Limits{}); err == nil || !strings.Contains(err.Error(), "want 67108864") {
		t.Fatalf("dense payload too short for its length: %v", err)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 { // the vector would be 64 MiB
		t.Errorf("refusing a short dense payload allocated %d bytes", grew)
	}
}

func TestFP16SaturatesInsteadOfWritingInfinity(t *testing.T) {
	c, _ := NewCodec(FP16, 1)
	msg, err := Marshal(c, []float32{1e6, -1e6, 1})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Unmarshal(msg, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float32{65504, -65504, 1}) {
		t.Fatalf("got %v", got)
	}
}

func TestErrorFeedbackLosesNothing(t *testing.T) {
	c, _ := NewCodec(TopKInt8, 0.01)
	n := 20000
	ef := NewErrorFeedback(n, 0)
	sent := make([]float64, n)
	total := make([]float64, n)
	dec := make([]float32, n)
	for round := 0; round < 30; round++ {
		delta := randVec(uint64(10+round), n)
		for i, d := range delta {
			total[i] += float64(d)
		}
		msg, err := ef.Compress(c, delta)
		if err != nil {
			t.Fatal(err)
		}
		UnmarshalInto(dec, msg, Limits{})
		for i, d := range dec {
			sent[i] += float64(d)
		}
	}
	// sent + residual == everything ever fed in, up to float32 rounding.
	for i := range total {
		if d := math.Abs(sent[i] + float64(ef.Residual()[i]) - total[i]); d > 1e-5 {
			t.Fatalf("coordinate %d: sent %v + residual %v != total %v", i, sent[i], ef.Residual()[i], total[i])
		}
	}
}

func TestDensityWarmup(t *testing.T) {
	if d := DensityWarmup(0.25, 0.01, 4, 0); d != 0.25 {
		t.Fatal(d)
	}
	if d := DensityWarmup(0.25, 0.01, 4, 2); math.Abs(d-0.05) > 1e-12 {
		t.Fatal(d)
	}
	if d := DensityWarmup(0.25, 0.01, 4, 9); d != 0.01 {
		t.Fatal(d)
	}
}

// TestParallelCodingIsIndependentOfCores: large vectors are encoded and
// decoded in pieces, one per core; the bytes and the values must not depend
// on how many cores there are, and a bad value in the last piece is caught.
func TestParallelCodingIsIndependentOfCores(t *testing.T) {
	v := randVec(6, 3*parallelMin+12345) // not a multiple of the int8 block
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, name := range Names() {
		c, _ := NewCodec(name, 0.01)
		var msgs [][]byte
		var outs [][]float32
		for _, procs := range []int{1, 3} {
			runtime.GOMAXPROCS(procs)
			msg, err := Marshal(c, v)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]float32, len(v))
			if _, err := UnmarshalInto(out, msg, Limits{}); err != nil {
				t.Fatalf("%s with %d cores: %v", name, procs, err)
			}
			msgs, outs = append(msgs, msg), append(outs, out)
		}
		if !slices.Equal(msgs[0], msgs[1]) || !slices.Equal(outs[0], outs[1]) {
			t.Fatalf("%s: 1 and 3 cores disagree", name)
		}
	}
	// A NaN near the end of a dense fp32 payload, in the last core's piece.
	c, _ := NewCodec(Dense, 1)
	b, _ := c.Encode(nil, v)
	binary.LittleEndian.PutUint32(b[len(b)-8:], 0x7fc00000)
	if err := c.Decode(make([]float32, len(v)), b); err == nil || !strings.Contains(err.Error(), fmt.Sprint(len(v)-2)) {
		t.Fatalf("NaN in the last piece: %v", err)
	}
}

// TestMomentumCorrectionClearsSentCoordinates: with DGC momentum correction
// the compressed vector is u + e with u = m·u + delta, and both the residual
// and the momentum are cleared where a coordinate was sent.
func TestMomentumCorrectionClearsSentCoordinates(t *testing.T) {
	c, _ := NewCodec(TopK, 0.1)
	n := 1000
	ef := NewErrorFeedback(n, 0.9)
	dec := make([]float32, n)
	for round := 0; round < 3; round++ {
		delta := randVec(uint64(40+round), n)
		msg, err := ef.Compress(c, delta)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalInto(dec, msg, Limits{}); err != nil {
			t.Fatal(err)
		}
		sent := 0
		for i, d := range dec {
			if d != 0 {
				sent++
				if ef.Residual()[i] != 0 || ef.momentum[i] != 0 {
					t.Fatalf("round %d: coordinate %d sent but residual %v momentum %v", round, i, ef.Residual()[i], ef.momentum[i])
				}
			} else if ef.momentum[i] == 0 {
				t.Fatalf("round %d: unsent coordinate %d lost its momentum", round, i)
			}
		}
		if sent != 100 {
			t.Fatalf("round %d: sent %d, want 100", round, sent)
		}
	}
}

// TestMaxKeptBoundsEncodings checks that no codec's encoding keeps more
// nonzero coordinates than MaxKept says, at the densities a thinned peer
// is assigned, and that top-k keeps exactly that many of a dense vector.
func TestMaxKeptBoundsEncodings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 100, 4096, 10000} {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		for _, name := range Names() {
			for _, d := range []float64{1, 0.1, 0.05, 0.025, 0.001} {
				c, err := NewCodec(name, d)
				if err != nil {
					t.Fatal(err)
				}
				b, err := Marshal(c, v)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := Unmarshal(b, Limits{Elems: n, MaxBytes: len(b)})
				if err != nil {
					t.Fatal(err)
				}
				nz := 0
				for _, x := range got {
					if x != 0 {
						nz++
					}
				}
				k, err := MaxKept(name, d, n)
				if err != nil {
					t.Fatal(err)
				}
				if nz > k || (name == TopK && nz != k) {
					t.Errorf("%s at density %g, n=%d: %d nonzero, MaxKept %d", name, d, n, nz, k)
				}
			}
		}
	}
}
