// Package cudacompat holds no code: its test checks the CUDA 13 patch of the
// vendored gorgonia.org/cu (third_party/gorgonia-cu, see PATCHES.md there)
// without CUDA or a GPU. The vendored copy is its own module, outside
// `go test ./...`, and builds only against NVIDIA's headers, which stay out of
// the repository; so the test compiles the patch's C wrappers (cuda13.h) with
// gcc against two stand-in headers that declare the five changed driver
// functions the CUDA 12 way and the CUDA 13 way, and runs them against fake
// drivers that record what they receive. Likewise for the cuDNN 9 stubs
// (dnn/cudnn9.h): compiled against stand-in cuDNN 8 and cuDNN 9 headers, run
// against the second.
package cudacompat
