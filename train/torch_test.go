package train

import (
	"slices"
	"strings"
	"testing"
)

// The torch layout tiles the flat vector exactly, names every tensor as
// nn.Sequential would, and its transposes round-trip.
func TestTorchLayout(t *testing.T) {
	for _, spec := range []ModelSpec{
		{Kind: "mlp", Hidden: []int{5, 3}},
		{Kind: "cnn", Channels: []int{2, 3}, Dense: 4},
	} {
		tm, err := TorchLayout(spec)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := NumParams(spec)
		flat := make([]float32, n)
		for i := range flat {
			flat[i] = float32(i)
		}
		back := make([]float32, n)
		off := 0
		var names []string
		for _, tt := range tm.Tensors {
			if tt.Offset != off {
				t.Fatalf("%s: %s at %d, want %d", spec.Kind, tt.Name, tt.Offset, off)
			}
			off += tt.Size()
			names = append(names, tt.Name)
			if err := tt.FromTorch(back, tt.ToTorch(flat)); err != nil {
				t.Fatal(err)
			}
		}
		if off != n || !slices.Equal(back, flat) {
			t.Fatalf("%s: layout covers %d of %d, or does not round-trip", spec.Kind, off, n)
		}
		want := map[string][]string{
			"mlp": {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"},
			"cnn": {"0.weight", "3.weight", "7.weight", "7.bias", "9.weight", "9.bias"},
		}[spec.Kind]
		if !slices.Equal(names, want) {
			t.Errorf("%s: tensors %v, want %v", spec.Kind, names, want)
		}
		if !strings.HasPrefix(tm.Module, "Sequential(\n  (0): ") || tm.Input.Std == 0 {
			t.Errorf("%s: module %q, input %+v", spec.Kind, tm.Module, tm.Input)
		}
	}
	// A dense weight: flat holds (in, out), torch (out, in).
	tm, _ := TorchLayout(ModelSpec{Kind: "mlp", Hidden: []int{3}})
	w := tm.Tensors[0]
	if !slices.Equal(w.Shape, []int{3, 784}) || !w.Transposed {
		t.Fatalf("first Linear: %+v", w)
	}
	flat := make([]float32, 784*3)
	flat[5*3+2] = 1 // input 5, output 2
	if got := w.ToTorch(append(flat, make([]float32, 3+3*10+10)...)); got[2*784+5] != 1 {
		t.Error("dense weight not transposed to (out, in)")
	}
	if err := w.FromTorch(flat, []float32{1}); err == nil || !strings.Contains(err.Error(), "1.weight") {
		t.Errorf("short tensor: %v", err)
	}
}

// An image model's input metadata carries the normalisation it was trained
// with: the spec's (an idx dataset's pinned values), else MNIST's.
func TestTorchInputNormalisation(t *testing.T) {
	tm, err := TorchLayout(ModelSpec{Kind: "mlp", Hidden: []int{4}, Input: []int{12, 16}, Classes: 3, Mean: 0.25, Std: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if want := (TorchInput{Shape: []int{1, 12, 16}, Scale: 255, Mean: 0.25, Std: 0.5}); !slices.Equal(tm.Input.Shape, want.Shape) || tm.Input.Mean != want.Mean || tm.Input.Std != want.Std {
		t.Errorf("own idx input %+v, want %+v", tm.Input, want)
	}
	tm, _ = TorchLayout(ModelSpec{Kind: "cnn", Channels: []int{2, 3}, Dense: 4})
	if tm.Input.Mean != 0.1307 || tm.Input.Std != 0.3081 {
		t.Errorf("mnist input %+v", tm.Input)
	}
}
