//go:build !cuda

package gpu

// CUDABuild says whether this binary runs gorgonia's CUDA engine.
const CUDABuild = false
