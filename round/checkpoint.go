package round

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/swarmtrain/swarmtrain/storage/safetensors"
	"github.com/swarmtrain/swarmtrain/train"
)

// Checkpoint metadata keys. A model checkpoint is a state_dict of the
// model's torch.nn equivalent (train.TorchLayout), so a PyTorch user loads
// it with load_state_dict(strict=True) and no mapping; the metadata says
// how to build that module and feed it. The stored per-round file carries
// only what follows from the swarm's config, so it is the same bytes (the
// same CID) wherever it is computed: the seal, a recheck, a replay.
// ExportFile adds where the model came from.
const (
	MetaFormat = "format"            // "pt", as safetensors.torch writes it
	MetaLayout = "swarmtrain.layout" // train.TorchLayoutVersion
	MetaModel  = "swarmtrain.model"  // the model spec, JSON (kind, hidden, channels, dense)
	MetaModule = "swarmtrain.module" // the nn.Sequential in words
	MetaInput  = "swarmtrain.input"  // JSON: shape, scale, mean, std (x = (p/scale - mean)/std)
	MetaOutput = "swarmtrain.output" // what the output is, in words

	// Added by ExportFile, never stored.
	MetaSwarm        = "swarmtrain.swarm"         // swarm ID (the manifest's CID)
	MetaName         = "swarmtrain.name"          // the swarm's name
	MetaConfig       = "swarmtrain.config"        // the swarm's canonical config
	MetaRound        = "swarmtrain.round"         // the round that produced the model
	MetaRecord       = "swarmtrain.record"        // that round's record CID
	MetaModelCID     = "swarmtrain.model_cid"     // the stored checkpoint's CID
	MetaTestSamples  = "swarmtrain.test_samples"  // test images (text: predicted characters) the metric counts
	MetaTestCorrect  = "swarmtrain.test_correct"  // of which predicted correctly
	MetaTestAccuracy = "swarmtrain.test_accuracy" // test_correct / test_samples
	MetaTestLoss     = "swarmtrain.test_loss"     // mean cross-entropy on them
)

// CheckpointFile encodes a flat parameter vector as a safetensors file of
// the model's torch state_dict (transposed where torch's shapes are), with
// metadata that follows from spec alone. The bytes are deterministic, so
// every peer that holds the same parameters computes the same file CID
// (FileCID).
func CheckpointFile(spec train.ModelSpec, params []float32) ([]byte, error) {
	tm, err := train.TorchLayout(spec)
	if err != nil {
		return nil, err
	}
	ts := make([]safetensors.Tensor, len(tm.Tensors))
	for i, t := range tm.Tensors {
		if t.Offset+t.Size() > len(params) {
			return nil, fmt.Errorf("checkpoint: %d parameters, the %s model needs more", len(params), spec.Kind)
		}
		ts[i] = safetensors.Tensor{Name: t.Name, Shape: t.Shape, Data: t.ToTorch(params)}
	}
	if last := tm.Tensors[len(tm.Tensors)-1]; last.Offset+last.Size() != len(params) {
		return nil, fmt.Errorf("checkpoint: %d parameters, the %s model has %d", len(params), spec.Kind, last.Offset+last.Size())
	}
	meta, err := checkpointMeta(spec, tm)
	if err != nil {
		return nil, err
	}
	return safetensors.Encode(ts, meta)
}

func checkpointMeta(spec train.ModelSpec, tm train.TorchModel) (map[string]string, error) {
	sj, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	ij, err := json.Marshal(tm.Input)
	if err != nil {
		return nil, err
	}
	return map[string]string{
		MetaFormat: "pt",
		MetaLayout: train.TorchLayoutVersion,
		MetaModel:  string(sj),
		MetaModule: tm.Module,
		MetaInput:  string(ij),
		MetaOutput: tm.Output,
	}, nil
}

// ModelVector reads a model checkpoint of spec back into the flat
// parameter vector, checking that the file is one CheckpointFile writes for
// spec: the layout version, the model spec, and every tensor's name and
// shape.
func ModelVector(spec train.ModelSpec, file []byte) ([]float32, error) {
	ts, meta, err := safetensors.Decode(file)
	if err != nil {
		return nil, err
	}
	want, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if meta[MetaLayout] == train.TorchLayoutVersion && meta[MetaModel] != string(want) {
		return nil, fmt.Errorf("checkpoint is of model %s, not %s", meta[MetaModel], want)
	}
	return torchVector(spec, ts, meta, 0)
}

// torchVector maps the tensors of a torch-layout checkpoint of spec back
// into the flat vector. spec may come from the file itself (VectorOf):
// every tensor's name and shape is checked against it, and the total
// against want (when > 0), before anything is allocated, so a spec naming
// a huge model costs nothing.
func torchVector(spec train.ModelSpec, ts []safetensors.Tensor, meta map[string]string, want int) ([]float32, error) {
	if v := meta[MetaLayout]; v != train.TorchLayoutVersion {
		return nil, fmt.Errorf("checkpoint layout %q: this build reads %q (a checkpoint written by an older swarmtrain, before tensors were named and shaped as torch.nn's)", v, train.TorchLayoutVersion)
	}
	tm, err := train.TorchLayout(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", MetaModel, err)
	}
	if len(ts) != len(tm.Tensors) {
		return nil, fmt.Errorf("checkpoint has %d tensors, the %s model %d", len(ts), spec.Kind, len(tm.Tensors))
	}
	total := 0
	for i, t := range tm.Tensors {
		if ts[i].Name != t.Name || !slices.Equal(ts[i].Shape, t.Shape) || len(ts[i].Data) != t.Size() || t.Offset != total {
			return nil, fmt.Errorf("checkpoint tensor %d is %s %v, the %s model's is %s %v", i, ts[i].Name, ts[i].Shape, spec.Kind, t.Name, t.Shape)
		}
		total += len(ts[i].Data)
	}
	if want > 0 && total != want {
		return nil, fmt.Errorf("%d values, the model has %d", total, want)
	}
	out := make([]float32, total)
	for i, t := range tm.Tensors {
		if err := t.FromTorch(out, ts[i].Data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OuterStateName is the tensor the outer optimizer's momentum is stored as.
const OuterStateName = "outer.momentum"

// VectorFile stores a plain vector (the outer optimizer's state) as a
// one-tensor safetensors file.
func VectorFile(name string, v []float32) ([]byte, error) {
	return safetensors.Encode([]safetensors.Tensor{{Name: name, Shape: []int{len(v)}, Data: v}}, nil)
}

// VectorOf reads a stored file back into a flat vector of want values: a
// model checkpoint (CheckpointFile; mapped back from the torch layout of
// the model spec it names) or a plain vector (VectorFile). The file is the
// one a signed record names by CID; Recheck rebuilds every model's file
// from the swarm's own spec and compares CIDs, so a file naming another
// spec of the same size cannot pass unnoticed.
func VectorOf(file []byte, want int) ([]float32, error) {
	ts, meta, err := safetensors.Decode(file)
	if err != nil {
		return nil, err
	}
	var out []float32
	if _, ok := meta[MetaModel]; ok {
		var spec train.ModelSpec
		if err := json.Unmarshal([]byte(meta[MetaModel]), &spec); err != nil {
			return nil, fmt.Errorf("%s: %w", MetaModel, err)
		}
		if out, err = torchVector(spec, ts, meta, want); err != nil {
			return nil, err
		}
	} else {
		if len(ts) != 1 || ts[0].Name != OuterStateName {
			return nil, fmt.Errorf("neither a model checkpoint (no %s metadata) nor a vector file (one tensor %s): a checkpoint written by an older swarmtrain?", MetaModel, OuterStateName)
		}
		out = ts[0].Data
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d values, the model has %d", len(out), want)
	}
	return out, nil
}

// Provenance is what ExportFile adds to a stored checkpoint: where the
// model came from and how it scores. Empty fields are left out (a model
// trained by one process has no swarm, round or record); Round only goes
// with a Record, Test only when it counts samples.
type Provenance struct {
	Swarm, Name string
	Config      []byte // canonical
	Round       int64
	Record      string
	Model       string
	Test        Metric
}

// Metric is a model's score on a test set.
type Metric struct {
	Samples, Correct int
	Loss             float64
}

// ExportFile returns the stored checkpoint file with p added to its
// metadata: the same tensors, for a user outside the swarm. The stored
// file stays what the ledger names by CID.
func ExportFile(stored []byte, p Provenance) ([]byte, error) {
	ts, meta, err := safetensors.Decode(stored)
	if err != nil {
		return nil, err
	}
	if meta[MetaLayout] != train.TorchLayoutVersion {
		return nil, fmt.Errorf("checkpoint layout %q: this build exports %q", meta[MetaLayout], train.TorchLayoutVersion)
	}
	add := map[string]string{MetaSwarm: p.Swarm, MetaName: p.Name, MetaConfig: string(p.Config),
		MetaRecord: p.Record, MetaModelCID: p.Model}
	if p.Record != "" {
		add[MetaRound] = strconv.FormatInt(p.Round, 10)
	}
	if p.Test.Samples > 0 {
		add[MetaTestSamples] = strconv.Itoa(p.Test.Samples)
		add[MetaTestCorrect] = strconv.Itoa(p.Test.Correct)
		add[MetaTestAccuracy] = strconv.FormatFloat(float64(p.Test.Correct)/float64(p.Test.Samples), 'f', -1, 64)
		add[MetaTestLoss] = strconv.FormatFloat(p.Test.Loss, 'f', -1, 64)
	}
	for k, v := range add {
		if v != "" {
			meta[k] = v
		}
	}
	return safetensors.Encode(ts, meta)
}
