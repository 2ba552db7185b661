package round

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/train"
)

func TestCheckpointFileRoundTrip(t *testing.T) {
	spec := train.ModelSpec{Kind: "mlp", Hidden: []int{4}}
	n, _ := train.NumParams(spec)
	params := make([]float32, n)
	for i := range params {
		params[i] = float32(i) / 7
	}
	file, err := CheckpointFile(spec, params)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := CheckpointFile(spec, params)
	if !bytes.Equal(file, again) {
		t.Fatal("checkpoint bytes are not deterministic")
	}
	ts, meta, err := safetensors.Decode(file)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Name != "1.weight" || !slices.Equal(ts[0].Shape, []int{4, 784}) || meta[MetaLayout] != train.TorchLayoutVersion || meta[MetaFormat] != "pt" {
		t.Fatalf("first tensor %s %v, meta %v", ts[0].Name, ts[0].Shape, meta)
	}
	for _, read := range []func() ([]float32, error){
		func() ([]float32, error) { return ModelVector(spec, file) },
		func() ([]float32, error) { return VectorOf(file, n) },
	} {
		got, err := read()
		if err != nil || !slices.Equal(got, params) {
			t.Fatalf("read back: %v", err)
		}
	}
	if _, err := ModelVector(train.ModelSpec{Kind: "mlp", Hidden: []int{5}}, file); err == nil || !strings.Contains(err.Error(), "not {") {
		t.Errorf("another spec's file: %v", err)
	}

	// A file in the flat layout of older builds is refused, saying so.
	old, _ := safetensors.Encode([]safetensors.Tensor{{Name: "layers.0.weight", Shape: []int{n}, Data: params}}, map[string]string{"format": "pt", "model": "mlp"})
	if _, err := VectorOf(old, n); err == nil || !strings.Contains(err.Error(), "older swarmtrain") {
		t.Errorf("old layout: %v", err)
	}
	if _, err := ModelVector(spec, old); err == nil || !strings.Contains(err.Error(), "older swarmtrain") {
		t.Errorf("old layout: %v", err)
	}
	if _, err := ExportFile(old, Provenance{}); err == nil || !strings.Contains(err.Error(), "torch/1") {
		t.Errorf("old layout: %v", err)
	}

	// A file whose metadata names a huge model is refused before anything
	// that size is allocated.
	hugeMeta := maps.Clone(meta)
	hugeMeta[MetaModel] = `{"kind":"mlp","hidden":[1099511627776]}`
	huge, err := safetensors.Encode(ts, hugeMeta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VectorOf(huge, n); err == nil || !strings.Contains(err.Error(), "checkpoint tensor 0") {
		t.Errorf("huge model: %v", err)
	}

	// Export adds provenance, keeps the tensors; the stored file is untouched.
	exp, err := ExportFile(file, Provenance{Swarm: "s", Round: 3, Record: "r", Model: "m", Test: Metric{Samples: 10, Correct: 7, Loss: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	ets, emeta, err := safetensors.Decode(exp)
	if err != nil {
		t.Fatal(err)
	}
	if emeta[MetaRound] != "3" || emeta[MetaTestCorrect] != "7" || emeta[MetaTestAccuracy] != "0.7" || emeta[MetaModule] != meta[MetaModule] || len(ets) != len(ts) {
		t.Errorf("export metadata %v", emeta)
	}
	if got, err := ModelVector(spec, exp); err != nil || !slices.Equal(got, params) {
		t.Errorf("exported file reads back: %v", err)
	}
}

// FuzzVectorOf feeds arbitrary bytes, as a peer could serve them for a
// model's CID, to the checkpoint reader: it never panics or allocates
// beyond what the file holds, and what it accepts is a vector of the
// wanted size that CheckpointFile writes back to a file it reads the same.
func FuzzVectorOf(f *testing.F) {
	spec := train.ModelSpec{Kind: "mlp", Hidden: []int{2}}
	n, _ := train.NumParams(spec)
	params := make([]float32, n)
	for i := range params {
		params[i] = float32(i%13) - 6
	}
	good, _ := CheckpointFile(spec, params)
	f.Add(good)
	vec, _ := VectorFile(OuterStateName, params)
	f.Add(vec)
	cnn, _ := CheckpointFile(train.ModelSpec{Kind: "cnn", Channels: []int{1, 1}, Dense: 1}, make([]float32, 25+25+49+1+10+10))
	f.Add(cnn)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := VectorOf(b, n)
		if err != nil {
			return
		}
		if len(v) != n {
			t.Fatalf("%d values, want %d", len(v), n)
		}
		if _, meta, _ := safetensors.Decode(b); meta[MetaModel] != "" {
			var s train.ModelSpec
			if err := json.Unmarshal([]byte(meta[MetaModel]), &s); err != nil {
				t.Fatal(err)
			}
			again, err := CheckpointFile(s, v)
			if err != nil {
				t.Fatalf("accepted a %s model CheckpointFile cannot write: %v", meta[MetaModel], err)
			}
			w, err := VectorOf(again, n)
			if err != nil || !slices.EqualFunc(v, w, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
				t.Fatalf("rewritten checkpoint reads back differently: %v", err)
			}
		}
	})
}
