package safetensors

import (
	"bytes"
	"encoding/binary"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
)

func sample() []Tensor {
	return []Tensor{
		{Name: "layers.0.weight", Shape: []int{3, 2}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "layers.0.bias", Shape: []int{2}, Data: []float32{-1, 0.5}},
		{Name: "scalar", Shape: []int{}, Data: []float32{7}},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample(), map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	if hl := binary.LittleEndian.Uint64(b); hl%8 != 0 {
		t.Fatalf("header length %d not 8-aligned", hl)
	}
	got, meta, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || len(got) != 3 {
		t.Fatalf("meta %v, %d tensors", meta, len(got))
	}
	for i, want := range sample() {
		if got[i].Name != want.Name || !slices.Equal(got[i].Shape, want.Shape) || !slices.Equal(got[i].Data, want.Data) {
			t.Fatalf("tensor %d: %+v want %+v", i, got[i], want)
		}
	}
	again, _ := Encode(sample(), map[string]string{"format": "pt"})
	if string(again) != string(b) {
		t.Fatal("encoding is not deterministic")
	}
}

func TestDecodeRejectsBadFiles(t *testing.T) {
	good, _ := Encode(sample(), nil)
	hl := binary.LittleEndian.Uint64(good)
	withHeader := func(h string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
		return append(append(b, h...), good[8+hl:]...)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"short":    {good[:5], "too short"},
		"huge hdr": {binary.LittleEndian.AppendUint64(nil, 1<<40), "header of"},
		"json":     {withHeader("{nope"), "header"},
		"dtype":    {withHeader(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`), "only F32"},
		"overlap":  {withHeader(`{"a":{"dtype":"F32","shape":[6],"data_offsets":[0,24]},"b":{"dtype":"F32","shape":[3],"data_offsets":[20,32]}}`), "gap or overlap"},
		"range":    {withHeader(`{"a":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}}`), "does not fit"},
		"shape":    {withHeader(`{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,36]}}`), "offsets"},
		"tail":     {withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), "after the last tensor"},
		"neg":      {withHeader(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`), "does not fit"},
		"noname":   {withHeader(`{"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), "empty name"},
	} {
		if _, _, err := Decode(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the checkpoint decoder. What it
// decodes fits in the input, and round-trips: Encode accepts it, and
// decoding that gives back the same tensors (names, shapes, bits) and
// metadata; Encode is deterministic on it. So Decode accepts only what
// Encode could have written, up to header layout.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(sample(), map[string]string{"k": "v"})
	f.Add(good)
	f.Add([]byte{8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '})
	withHeader := func(h string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...)
	}
	f.Add(withHeader(`{"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`))
	f.Add(withHeader(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[],"data_offsets":[0,0]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, meta, err := Decode(b)
		if err != nil {
			return
		}
		var total int
		for _, x := range ts {
			total += 4 * len(x.Data)
		}
		if total > len(b) {
			t.Fatalf("decoded %d bytes of tensors from %d bytes", total, len(b))
		}
		enc, err := Encode(ts, meta)
		if err != nil {
			t.Fatalf("decoded a file Encode refuses to write back: %v", err)
		}
		again, meta2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Encode wrote what Decode refuses: %v", err)
		}
		if !maps.Equal(meta, meta2) || len(again) != len(ts) {
			t.Fatalf("round trip: %d tensors, meta %v; then %d, %v", len(ts), meta, len(again), meta2)
		}
		byName := map[string]Tensor{}
		for _, x := range again {
			byName[x.Name] = x
		}
		for _, x := range ts {
			y, ok := byName[x.Name]
			if !ok || !slices.Equal(x.Shape, y.Shape) || len(x.Data) != len(y.Data) {
				t.Fatalf("tensor %q: %v then %v", x.Name, x.Shape, y.Shape)
			}
			for i := range x.Data {
				if math.Float32bits(x.Data[i]) != math.Float32bits(y.Data[i]) {
					t.Fatalf("tensor %q value %d: bits changed", x.Name, i)
				}
			}
		}
		if twice, _ := Encode(again, meta2); !bytes.Equal(twice, enc) {
			t.Fatal("Encode is not deterministic on a decoded file")
		}
	})
}
