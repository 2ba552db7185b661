//go:build openblas

package train

import (
	"gonum.org/v1/netlib/blas/netlib"
	"gorgonia.org/gorgonia"
)

// Swap gorgonia's pure-Go BLAS for OpenBLAS through gonum's cgo bindings
// (link with CGO_LDFLAGS=-lopenblas). Gorgonia keeps one process-wide BLAS,
// so this is an init by necessity.
func init() { gorgonia.Use(netlib.Implementation{}) }

// BLAS names the BLAS implementation in use.
func BLAS() string { return "openblas (dense layers) + swarmtrain sgemm (convolutions)" }
