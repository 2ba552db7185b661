// Package gpu checks and times gorgonia's CUDA path on a GPU machine: the
// patched gorgonia.org/cu (third_party/gorgonia-cu) against the real driver,
// cuBLAS against a reference, and one MLP training step through gorgonia's
// CUDA tape machine against a float64 reference written out in Go.
//
// The MLP test and benchmark build without tags too, so the same command run
// with and without -tags cuda gives the CPU and the GPU figures side by side;
// the driver tests need -tags cuda. The GPU machine has no Go toolchain:
// scripts/gpu/build.sh compiles the test binaries here against headers and
// link stubs copied from it (scripts/gpu/probe.sh), scripts/gpu/run.sh runs
// them there within a time budget. See scripts/gpu/README.md.
package gpu
