// Package cudakernels registers gorgonia's element-wise CUDA kernels (PTX)
// with gorgonia's CUDA engine: import it for its side effect in any binary
// built with -tags cuda, or gorgonia's CUDA tape machine finds no kernel for
// add, sub, mul, relu's comparison and the rest. cudamodules.go is generated
// by scripts/gpu/cudamodules.sh (gorgonia's cmd/cudagen without the need for
// a visible GPU); without the cuda tag the package is empty.
package cudakernels
