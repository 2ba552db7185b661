package train

import (
	"fmt"
	"strconv"
	"strings"
)

// Device is where a model's training steps run. The zero Device is the CPU.
type Device struct {
	Kind  string // "cpu" or "cuda"
	Index int    // GPU ordinal for cuda
}

func (d Device) String() string {
	if d.Kind == "cuda" {
		return fmt.Sprintf("cuda:%d", d.Index)
	}
	return "cpu"
}

// ParseDevice reads "cpu", "cuda" or "cuda:N". It fails for cuda in a build
// without CUDA support (the cuda build tag).
func ParseDevice(s string) (Device, error) {
	switch {
	case s == "" || s == "cpu":
		return Device{Kind: "cpu"}, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		d := Device{Kind: "cuda"}
		if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 {
				return Device{}, fmt.Errorf("device %q: want cuda:N with N a GPU index", s)
			}
			d.Index = n
		}
		if !cudaBuilt {
			return Device{}, fmt.Errorf("device %q: this swarmtrain was built without CUDA; rebuild with -tags cuda (see make test-cuda) or use --device cpu", s)
		}
		return d, nil
	}
	return Device{}, fmt.Errorf("device %q: unknown device (want cpu, cuda or cuda:N)", s)
}
