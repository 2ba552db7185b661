//go:build cuda

package gpu

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gorgonia.org/cu"
	cublas "gorgonia.org/cu/blas"
)

// withContext runs f on a locked OS thread with a fresh context on GPU 0
// current: made by cuCtxCreate, the first of the five CUDA 13 patches.
func withContext(t *testing.T, f func(dev cu.Device)) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil || n == 0 {
		t.Fatalf("no CUDA device: count %d, err %v", n, err)
	}
	dev, err := cu.GetDevice(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := dev.MakeContext(cu.SchedAuto)
	if err != nil {
		t.Fatalf("cuCtxCreate (patched: NULL CUctxCreateParams on CUDA 13): %v", err)
	}
	defer ctx.Destroy()
	f(dev)
}

// hostView is managed memory seen from the host as n float32s. The address
// is C memory (cuMemAllocManaged), never moved by Go's collector; it is read
// through a pointer-typed view of the integer so that vet's unsafeptr check,
// written for Go memory, has nothing to flag.
func hostView(ptr cu.DevicePtr, n int) []float32 {
	p := *(*unsafe.Pointer)(unsafe.Pointer(&ptr))
	return unsafe.Slice((*float32)(p), n)
}

func TestDriver(t *testing.T) {
	withContext(t, func(dev cu.Device) {
		name, _ := dev.Name()
		maj, min, _ := dev.ComputeCapability()
		free, total, _ := cu.MemInfo()
		t.Logf("GPU 0: %s, compute capability %d.%d, %d MiB free of %d MiB, driver CUDA version %d", name, maj, min, free>>20, total>>20, cu.Version())

		// Plain device memory: host → device → host.
		src := make([]float32, 1<<16)
		for i := range src {
			src[i] = float32(i) * 0.5
		}
		size := int64(len(src) * 4)
		ptr, err := cu.MemAlloc(size)
		if err != nil {
			t.Fatal(err)
		}
		defer cu.MemFree(ptr)
		if err := cu.MemcpyHtoD(ptr, unsafe.Pointer(&src[0]), size); err != nil {
			t.Fatal(err)
		}
		dst := make([]float32, len(src))
		if err := cu.MemcpyDtoH(unsafe.Pointer(&dst[0]), ptr, size); err != nil {
			t.Fatal(err)
		}
		for i := range src {
			if dst[i] != src[i] {
				t.Fatalf("round trip through device memory: element %d is %v, want %v", i, dst[i], src[i])
			}
		}
	})
}

// TestManagedMemoryAdvice exercises the CUmemLocation patches: advice and
// prefetch to the GPU (a device location) and back to CU_DEVICE_CPU (the
// host location).
func TestManagedMemoryAdvice(t *testing.T) {
	withContext(t, func(dev cu.Device) {
		if ok, err := dev.Attribute(cu.ConcurrentManagedAccess); err != nil || ok == 0 {
			t.Skipf("GPU 0 has no concurrent managed access (attribute %d, err %v): cuMemAdvise/cuMemPrefetchAsync need it", ok, err)
		}
		const n = 1 << 20
		ptr, err := cu.MemAllocManaged(n*4, cu.AttachGlobal)
		if err != nil {
			t.Fatal(err)
		}
		defer cu.MemFree(ptr)
		host := hostView(ptr, n)
		for i := range host {
			host[i] = float32(i)
		}
		if err := ptr.MemAdvise(n*4, cu.SetPreferredLocation, dev); err != nil {
			t.Fatalf("cuMemAdvise(SetPreferredLocation, GPU 0): %v", err)
		}
		if err := ptr.MemAdvise(n*4, cu.SetAccessedBy, cu.CPU); err != nil {
			t.Fatalf("cuMemAdvise(SetAccessedBy, CU_DEVICE_CPU): %v", err)
		}
		stream, err := cu.MakeStream(cu.NonBlocking)
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Destroy()
		if err := ptr.MemPrefetchAsync(n*4, dev, stream); err != nil {
			t.Fatalf("cuMemPrefetchAsync(GPU 0): %v", err)
		}
		if err := ptr.MemPrefetchAsync(n*4, cu.CPU, stream); err != nil {
			t.Fatalf("cuMemPrefetchAsync(CU_DEVICE_CPU): %v", err)
		}
		if err := cu.Synchronize(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 4099 {
			if host[i] != float32(i) {
				t.Fatalf("managed memory after prefetches: element %d is %v", i, host[i])
			}
		}
	})
}

// TestGraphEdges exercises the CUgraphEdgeData patches: two edges added with
// NULL edge data and read back.
func TestGraphEdges(t *testing.T) {
	withContext(t, func(cu.Device) {
		g, err := cu.MakeGraph()
		if err != nil {
			t.Fatal(err)
		}
		defer g.Destroy()
		a, err := g.AddEmptyNode(nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := g.AddEmptyNode(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := g.AddEmptyNode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.AddDependencies([]cu.Node{a, a}, []cu.Node{b, c}); err != nil {
			t.Fatalf("cuGraphAddDependencies: %v", err)
		}
		from, to := make([]cu.Node, 2), make([]cu.Node, 2)
		if _, n, err := g.Edges(from, to); err != nil || n != 2 {
			t.Fatalf("cuGraphGetEdges: %d edges, err %v; want 2", n, err)
		}
	})
}

// TestSgemm: cuBLAS against a float64 product, 1e-4 relative.
func TestSgemm(t *testing.T) {
	withContext(t, func(cu.Device) {
		const m, n, k = 64, 256, 784
		r := rand.New(rand.NewPCG(4, 4))
		alloc := func(size int) ([]float32, cu.DevicePtr) {
			ptr, err := cu.MemAllocManaged(int64(size*4), cu.AttachGlobal)
			if err != nil {
				t.Fatal(err)
			}
			return hostView(ptr, size), ptr
		}
		a, pa := alloc(m * k)
		b, pb := alloc(k * n)
		c, pc := alloc(m * n)
		defer cu.MemFree(pa)
		defer cu.MemFree(pb)
		defer cu.MemFree(pc)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		impl := cublas.New()
		// cuBLAS is column-major: C (m×n) = A (m×k) · B (k×n), leading
		// dimensions m, k, m.
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, m, b, k, 0, c, m)
		if err := impl.Err(); err != nil {
			t.Fatalf("cublasSgemm: %v", err)
		}
		if err := cu.Synchronize(); err != nil {
			t.Fatal(err)
		}
		var diff, scale float64
		for j := 0; j < n; j++ {
			for i := 0; i < m; i++ {
				var want float64
				for l := 0; l < k; l++ {
					want += float64(a[l*m+i]) * float64(b[j*k+l])
				}
				diff = math.Max(diff, math.Abs(float64(c[j*m+i])-want))
				scale = math.Max(scale, math.Abs(want))
			}
		}
		t.Logf("cublasSgemm %dx%dx%d: relative error %.2e", m, n, k, diff/scale)
		if diff/scale > 1e-4 {
			t.Fatalf("cublasSgemm relative error %.2e, want <= 1e-4", diff/scale)
		}
	})
}
