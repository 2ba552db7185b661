//go:build cuda

package gpu

// gorgonia's element-wise kernels: without them its CUDA engine has no add,
// sub or relu to run.
import _ "github.com/swarmtrain/swarmtrain/internal/cudakernels"

// CUDABuild says whether this binary runs gorgonia's CUDA engine.
const CUDABuild = true
