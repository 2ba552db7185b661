//go:build !openblas

package train

// BLAS names the BLAS implementation in use.
func BLAS() string { return "gonum (pure Go)" }
