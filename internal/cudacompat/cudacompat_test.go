package cudacompat

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// cuDir is the vendored gorgonia.org/cu, relative to this package.
const cuDir = "../../third_party/gorgonia-cu"

// TestShimBuildsAndForwards compiles cuda13.h against the CUDA 12 and the
// CUDA 13 stand-in headers with -Werror (a wrong argument count or type for
// that version fails the build) and runs testdata/shim_check.c, whose fake
// driver functions check what each wrapper passes: NULL create params and
// edge data, a device CUmemLocation for a GPU ordinal and a host one for
// CU_DEVICE_CPU, prefetch flags 0.
func TestShimBuildsAndForwards(t *testing.T) {
	cc := compiler(t)
	for _, v := range []string{"cuda12", "cuda13"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			bin := filepath.Join(t.TempDir(), "shim_check")
			build := exec.CommandContext(ctx, cc, "-std=c99", "-Wall", "-Wextra", "-Werror",
				"-I", filepath.Join(cuDir, "testdata", v), "-I", cuDir,
				filepath.Join(cuDir, "testdata", "shim_check.c"), "-o", bin)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("cuda13.h does not compile against testdata/%s/cuda.h: %v\n%s", v, err, out)
			}
			out, err := exec.CommandContext(ctx, bin).CombinedOutput()
			if err != nil {
				t.Fatalf("shim check against testdata/%s/cuda.h: %v\n%s", v, err, out)
			}
			want := map[string]string{"cuda12": "ok CUDA_VERSION=12080", "cuda13": "ok CUDA_VERSION=13000"}[v]
			if got := strings.TrimSpace(string(out)); got != want {
				t.Fatalf("shim check printed %q, want %q", got, want)
			}
		})
	}
}

// compiler is gcc or cc from PATH; the test skips, saying so, without one.
func compiler(t *testing.T) string {
	for _, name := range []string{"gcc", "cc"} {
		if cc, err := exec.LookPath(name); err == nil {
			return cc
		}
	}
	t.Skip("no C compiler (gcc or cc) on PATH: the CUDA patch checks need one")
	return ""
}

// TestCudnn9Stubs compiles dnn/cudnn9.h and dnn/algorithm.c with -Werror
// against a stand-in cuDNN 8 header (which still declares what cuDNN 9
// removed: cudnn9.h must add nothing) and a stand-in cuDNN 9 header (cudnn9.h
// must declare all of it, with the types dnn's Go files pass), and runs the
// cuDNN 9 build: every stub answers NOT_SUPPORTED, destroys SUCCESS.
func TestCudnn9Stubs(t *testing.T) {
	cc := compiler(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	gcc := func(v string, args ...string) {
		t.Helper()
		base := []string{"-std=c99", "-Wall", "-Wextra", "-Werror",
			"-I", filepath.Join(cuDir, "testdata", v), "-I", filepath.Join(cuDir, "dnn")}
		if out, err := exec.CommandContext(ctx, cc, append(base, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("against testdata/%s/cudnn.h: %v\n%s", v, err, out)
		}
	}
	check, algo := filepath.Join(cuDir, "testdata", "cudnn_check.c"), filepath.Join(cuDir, "dnn", "algorithm.c")
	gcc("cudnn8", "-c", check, "-o", filepath.Join(dir, "check8.o"))
	gcc("cudnn8", "-c", algo, "-o", filepath.Join(dir, "algo8.o"))
	bin := filepath.Join(dir, "cudnn_check")
	gcc("cudnn9", check, algo, "-o", bin)
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok CUDNN_MAJOR=9" {
		t.Fatalf("cuDNN 9 stubs: %v\n%s", err, out)
	}
}

// TestGoCallsOnlyTheWrappers fails if a Go file of the vendored package calls
// one of the five driver functions directly: a re-vendored or edited copy
// would then compile against CUDA 12 and break again on CUDA 13.
func TestGoCallsOnlyTheWrappers(t *testing.T) {
	direct := regexp.MustCompile(`\bC\.(cuCtxCreate|cuMemAdvise|cuMemPrefetchAsync|cuGraphAddDependencies|cuGraphGetEdges)\(`)
	files, err := filepath.Glob(filepath.Join(cuDir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (err %v)", cuDir, err)
	}
	wrapped := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, loc := range direct.FindAllIndex(src, -1) {
			line := 1 + strings.Count(string(src[:loc[0]]), "\n")
			t.Errorf("%s:%d calls %s directly; call the cuCompat wrapper from cuda13.h", filepath.Base(f), line, src[loc[0]:loc[1]-1])
		}
		wrapped += strings.Count(string(src), "C.cuCompat")
	}
	// 5 context creations (ctx.go 2, ctx_debug.go 2, cucontext.go 1),
	// addressing.go 2, graph.go 2: the call sites PATCHES.md lists.
	if wrapped != 9 {
		t.Errorf("found %d calls of cuCompat wrappers in %s, want the 9 PATCHES.md lists", wrapped, cuDir)
	}
}
