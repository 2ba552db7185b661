package train

import (
	"fmt"
	"strings"

	"github.com/swarmtrain/swarmtrain/train/data"
)

// The PyTorch view of a model: the torch.nn module tree a PyTorch user
// would build for each model kind, and the mapping between its state_dict
// and our flat parameter vector. Checkpoint files use it (names and shapes
// exactly as torch.nn has them, so load_state_dict(strict=True) needs no
// mapping); everything in memory and everything a round hashes keeps the
// flat vector, so the conversion happens only at the file boundary.
//
// Each model is an nn.Sequential, so the tensor names are the module
// indices print(model) shows ("1.weight" is the first Linear of an mlp).
// Dense weights are held (in, out) in the flat vector, the transpose of
// nn.Linear's (out, in); conv weights are (out, in, kh, kw) in both.

// TorchLayoutVersion names this mapping in checkpoint metadata; a loader
// refuses a version it does not know rather than load transposed weights.
const TorchLayoutVersion = "torch/1"

// TorchTensor is one tensor of a model's torch state_dict.
type TorchTensor struct {
	Name  string
	Shape []int // as torch holds it
	// Offset is where the tensor starts in the flat vector.
	Offset int
	// Transposed says the flat vector holds the (Shape[1], Shape[0])
	// transpose (dense weights).
	Transposed bool
}

// Size is the number of values of t.
func (t TorchTensor) Size() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// TorchModel is a model kind's torch.nn equivalent.
type TorchModel struct {
	// Tensors are the state_dict entries in flat order.
	Tensors []TorchTensor
	// Module is the nn.Sequential in words, as print(model) would list it.
	Module string
	// Input says how an image becomes the model's input.
	Input TorchInput
	// Output says what the model's output is.
	Output string
}

// TorchInput is the input a torch model expects: images of Shape (without
// the batch dimension), each pixel byte p fed as (p/Scale - Mean) / Std in
// float32.
type TorchInput struct {
	Shape []int   `json:"shape"`
	Scale float64 `json:"scale"`
	Mean  float64 `json:"mean"`
	Std   float64 `json:"std"`
}

// TorchLayout describes spec's model as torch.nn would build it. A new
// model kind adds its case here (and to examples/python/load_checkpoint.py).
func TorchLayout(spec ModelSpec) (TorchModel, error) {
	if err := spec.validate(); err != nil {
		return TorchModel{}, err
	}
	var (
		tm  TorchModel
		mod []string // the Sequential's children, in order
		off int
	)
	add := func(s string) int { mod = append(mod, s); return len(mod) - 1 }
	tensor := func(idx int, name string, transposed bool, shape ...int) {
		t := TorchTensor{Name: fmt.Sprintf("%d.%s", idx, name), Shape: shape, Offset: off, Transposed: transposed}
		tm.Tensors = append(tm.Tensors, t)
		off += t.Size()
	}
	linear := func(in, out int) {
		i := add(fmt.Sprintf("Linear(in_features=%d, out_features=%d, bias=True)", in, out))
		tensor(i, "weight", true, out, in)
		tensor(i, "bias", false, out)
	}
	if spec.Kind == "transformer" {
		return transformerTorch(spec)
	}
	imageRows, imageCols, numClass := spec.rows(), spec.cols(), spec.classes()
	switch spec.Kind {
	case "mlp":
		add("Flatten(start_dim=1, end_dim=-1)")
		in := imageRows * imageCols
		for _, h := range spec.Hidden {
			linear(in, h)
			add("ReLU()")
			in = h
		}
		linear(in, numClass)
	case "cnn":
		// The conv blocks pool after ReLU (convPool computes ReLU then max,
		// which commute); Flatten is channel-major (c, y, x), as ours is.
		in := 1
		for _, c := range spec.Channels {
			i := add(fmt.Sprintf("Conv2d(%d, %d, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2), bias=False)", in, c))
			tensor(i, "weight", false, c, in, convK, convK)
			add("ReLU()")
			add("MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)")
			in = c
		}
		add("Flatten(start_dim=1, end_dim=-1)")
		linear(in*(imageRows/4)*(imageCols/4), spec.Dense)
		add("ReLU()")
		linear(spec.Dense, numClass)
	default:
		return TorchModel{}, fmt.Errorf("model.kind: no torch layout for %q", spec.Kind)
	}
	if n, err := NumParams(spec); err != nil || n != off {
		return TorchModel{}, fmt.Errorf("torch layout of %s covers %d parameters, the model has %d (%v)", spec.Kind, off, n, err)
	}
	var b strings.Builder
	b.WriteString("Sequential(\n")
	for i, m := range mod {
		fmt.Fprintf(&b, "  (%d): %s\n", i, m)
	}
	b.WriteString(")")
	tm.Module = b.String()
	mean, std := spec.Mean, spec.Std
	if mean == 0 && std == 0 {
		mean, std = data.MNISTNormalisation()
	}
	tm.Input = TorchInput{Shape: []int{1, imageRows, imageCols}, Scale: 255, Mean: mean, Std: std}
	tm.Output = fmt.Sprintf("logits of shape (N, %d): the predicted class is their argmax; trained with cross-entropy (log_softmax + NLL, mean over the batch)", numClass)
	return tm, nil
}

// transformerTorch is the transformer's torch view: benchmarks/lm/
// torch_lm.py's GPT module, tensors named as train.Layout names them,
// Linear weights transposed to torch's (out, in), embeddings and norms as
// they are. It is not an nn.Sequential: the metadata says which module.
func transformerTorch(spec ModelSpec) (TorchModel, error) {
	var tm TorchModel
	off := 0
	for _, p := range (transformerKind{}).params(spec) {
		t := TorchTensor{Name: p.name, Shape: p.shape, Offset: off}
		if len(p.shape) == 2 && !strings.HasSuffix(p.name, "_emb.weight") {
			t.Shape, t.Transposed = []int{p.shape[1], p.shape[0]}, true
		}
		tm.Tensors = append(tm.Tensors, t)
		off += t.Size()
	}
	tm.Module = fmt.Sprintf("decoder-only transformer, pre-layer-norm (benchmarks/lm/torch_lm.py's GPT): vocabulary %d, context %d, %d blocks of width %d with %d heads, GELU (tanh) MLP of width %d, untied output layer",
		spec.Classes, spec.Context, spec.Layers, spec.Width, spec.Heads, 4*spec.Width)
	tm.Input = TorchInput{Shape: []int{spec.Context}, Scale: 1}
	tm.Output = fmt.Sprintf("next-token logits of shape (N, %d, %d) over the text dataset's vocabulary (token 0: a character the training split lacks); trained with next-token cross-entropy", spec.Context, spec.Classes)
	return tm, nil
}

// ToTorch returns tensor t's values in torch's order, read from the flat
// vector (a copy; transposed where t is).
func (t TorchTensor) ToTorch(flat []float32) []float32 {
	src := flat[t.Offset : t.Offset+t.Size()]
	out := make([]float32, len(src))
	if !t.Transposed {
		copy(out, src)
		return out
	}
	transpose(out, src, t.Shape[1], t.Shape[0]) // flat holds (in, out); torch (out, in)
	return out
}

// FromTorch writes tensor t's values, given in torch's order, into the
// flat vector.
func (t TorchTensor) FromTorch(flat, vals []float32) error {
	if len(vals) != t.Size() {
		return fmt.Errorf("tensor %s: %d values, shape %v holds %d", t.Name, len(vals), t.Shape, t.Size())
	}
	dst := flat[t.Offset : t.Offset+t.Size()]
	if !t.Transposed {
		copy(dst, vals)
		return nil
	}
	transpose(dst, vals, t.Shape[0], t.Shape[1])
	return nil
}

// transposeTile is the side of the square blocks transpose copies: two
// 32x32 float32 tiles (8 KiB) stay in L1, so neither side is read or
// written a cache line per value (benchmarks/checkpoint measures it: the
// plain loops took 194 ms against 132 ms on a 2048x2048 layer, side by
// side on a loaded machine).
const transposeTile = 32

// transpose writes the rows x cols matrix src, transposed, into dst
// (cols x rows).
func transpose(dst, src []float32, rows, cols int) {
	for r0 := 0; r0 < rows; r0 += transposeTile {
		r1 := min(r0+transposeTile, rows)
		for c0 := 0; c0 < cols; c0 += transposeTile {
			c1 := min(c0+transposeTile, cols)
			for r := r0; r < r1; r++ {
				row := src[r*cols : r*cols+cols]
				for c := c0; c < c1; c++ {
					dst[c*rows+r] = row[c]
				}
			}
		}
	}
}
