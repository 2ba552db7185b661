// Package testdata finds the shared MNIST files for tests across the module.
//
// Tests never download: they read MNIST from $SWARMTRAIN_DATA/mnist, or from
// ../shared/data/mnist beside the repository (where CI puts it). Where neither
// exists the test fails with a message saying where it looked and how to get
// the data: a green `make test` must mean the data tests really ran.
package testdata

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Root returns the directory that holds dataset folders (mnist/, ...), or ""
// when none was found: $SWARMTRAIN_DATA if it holds mnist/, else
// ../shared/data beside the repository.
func Root() string {
	if d := os.Getenv("SWARMTRAIN_DATA"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "mnist")); err == nil {
			return d
		}
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	// file is <repo>/internal/testdata/testdata.go; shared/ sits beside <repo>.
	repo := filepath.Dir(filepath.Dir(filepath.Dir(file)))
	d := filepath.Join(filepath.Dir(repo), "shared", "data")
	if _, err := os.Stat(filepath.Join(d, "mnist")); err == nil {
		return d
	}
	return ""
}

// MNISTDir returns the MNIST directory or fails the test, saying how to get it.
func MNISTDir(tb testing.TB) string {
	tb.Helper()
	root := Root()
	if root != "" {
		d := filepath.Join(root, "mnist")
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	tb.Fatalf("MNIST not found in $SWARMTRAIN_DATA/mnist (SWARMTRAIN_DATA=%q) nor ../shared/data/mnist: run `make data` (downloads and verifies it), or set SWARMTRAIN_DATA to a folder holding mnist/", os.Getenv("SWARMTRAIN_DATA"))
	return ""
}
