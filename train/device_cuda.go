//go:build cuda

package train

// cudaBuilt says whether this binary was built with the cuda tag. With it,
// gorgonia's CUDA engine builds (gorgonia.org/cu is patched in-tree for CUDA
// 13 and cuDNN 9, third_party/gorgonia-cu), but New still refuses a cuda
// device until the engine seam exists (docs/ARCHITECTURE.md, "CUDA").
const cudaBuilt = true
