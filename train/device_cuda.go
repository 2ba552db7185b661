//go:build cuda

package train

// cudaBuilt says whether this binary was built with the cuda tag. The CUDA
// engine itself does not build yet: gorgonia.org/cu v0.9.6 targets the
// CUDA 10/11 driver API and fails against CUDA 13's headers (see
// docs/ARCHITECTURE.md, "CUDA"), so New still refuses a cuda device.
const cudaBuilt = true
