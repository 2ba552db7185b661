//go:build !cuda

package train

// cudaBuilt says whether this binary has the CUDA engine.
const cudaBuilt = false
