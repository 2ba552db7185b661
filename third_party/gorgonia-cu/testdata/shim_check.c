// shim_check.c compiles cuda13.h against a stand-in cuda.h (testdata/cuda12 or
// testdata/cuda13, chosen by -I) with -Werror, so a wrapper that passes the
// wrong number or type of arguments for that CUDA version fails to build; then
// it defines the driver functions itself, calls each wrapper, and checks what
// the driver would have received. internal/cudacompat's test runs it for both
// versions. Exit 0 and "ok" on success; otherwise one line per failed check.
#include <stdio.h>
#include <string.h>
#include "cuda13.h"

static int failed;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failed = 1; } } while (0)

// What the last call received.
static int calls;
static unsigned int gotFlags;
static CUdevice gotDev;
static CUdeviceptr gotPtr;
static size_t gotCount, gotN;
static CUstream gotStream;
static const CUgraphNode *gotFrom, *gotTo;
static size_t *gotNumEdges;
#if CUDA_VERSION >= 13000
static CUctxCreateParams *gotParams = (CUctxCreateParams *)1;
static CUmemLocation gotLoc;
static unsigned int gotPrefetchFlags = 99;
static const CUgraphEdgeData *gotEdgeData = (const CUgraphEdgeData *)1;
#endif

static struct CUctx_st *const fakeCtx = (struct CUctx_st *)0x1000;

#if CUDA_VERSION >= 13000
CUresult cuCtxCreate(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags, CUdevice dev) {
	calls++; gotParams = params; gotFlags = flags; gotDev = dev; *pctx = fakeCtx;
	return CUDA_SUCCESS;
}
CUresult cuMemAdvise(CUdeviceptr p, size_t count, CUmem_advise advice, CUmemLocation loc) {
	(void)advice; calls++; gotPtr = p; gotCount = count; gotLoc = loc;
	return CUDA_SUCCESS;
}
CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t count, CUmemLocation loc, unsigned int flags, CUstream s) {
	calls++; gotPtr = p; gotCount = count; gotLoc = loc; gotPrefetchFlags = flags; gotStream = s;
	return CUDA_SUCCESS;
}
CUresult cuGraphAddDependencies(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, const CUgraphEdgeData *ed, size_t n) {
	(void)g; calls++; gotFrom = from; gotTo = to; gotEdgeData = ed; gotN = n;
	return CUDA_SUCCESS;
}
CUresult cuGraphGetEdges(CUgraph g, CUgraphNode *from, CUgraphNode *to, CUgraphEdgeData *ed, size_t *numEdges) {
	(void)g; calls++; gotFrom = from; gotTo = to; gotEdgeData = ed; gotNumEdges = numEdges;
	return CUDA_SUCCESS;
}
#else
CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev) {
	calls++; gotFlags = flags; gotDev = dev; *pctx = fakeCtx;
	return CUDA_SUCCESS;
}
CUresult cuMemAdvise(CUdeviceptr p, size_t count, CUmem_advise advice, CUdevice dev) {
	(void)advice; calls++; gotPtr = p; gotCount = count; gotDev = dev;
	return CUDA_SUCCESS;
}
CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t count, CUdevice dev, CUstream s) {
	calls++; gotPtr = p; gotCount = count; gotDev = dev; gotStream = s;
	return CUDA_SUCCESS;
}
CUresult cuGraphAddDependencies(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, size_t n) {
	(void)g; calls++; gotFrom = from; gotTo = to; gotN = n;
	return CUDA_SUCCESS;
}
CUresult cuGraphGetEdges(CUgraph g, CUgraphNode *from, CUgraphNode *to, size_t *numEdges) {
	(void)g; calls++; gotFrom = from; gotTo = to; gotNumEdges = numEdges;
	return CUDA_SUCCESS;
}
#endif

int main(void) {
	CUcontext ctx = NULL;
	CUstream stream = (CUstream)0x2000;
	CUgraphNode from[2], to[2];
	size_t numEdges = 2;

	CHECK(cuCompatCtxCreate(&ctx, 4, 3) == CUDA_SUCCESS);
	CHECK(ctx == fakeCtx && gotFlags == 4 && gotDev == 3);
#if CUDA_VERSION >= 13000
	CHECK(gotParams == NULL);
#endif

	// A GPU ordinal becomes a device location; CU_DEVICE_CPU the host.
	CHECK(cuCompatMemAdvise(0xbeef, 64, CU_MEM_ADVISE_SET_READ_MOSTLY, 2) == CUDA_SUCCESS);
	CHECK(gotPtr == 0xbeef && gotCount == 64);
#if CUDA_VERSION >= 13000
	CHECK(gotLoc.type == CU_MEM_LOCATION_TYPE_DEVICE && gotLoc.id == 2);
	CHECK(cuCompatMemAdvise(0xbeef, 64, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, CU_DEVICE_CPU) == CUDA_SUCCESS);
	CHECK(gotLoc.type == CU_MEM_LOCATION_TYPE_HOST);
#else
	CHECK(gotDev == 2);
#endif

	CHECK(cuCompatMemPrefetchAsync(0xf00d, 128, 1, stream) == CUDA_SUCCESS);
	CHECK(gotPtr == 0xf00d && gotCount == 128 && gotStream == stream);
#if CUDA_VERSION >= 13000
	CHECK(gotLoc.type == CU_MEM_LOCATION_TYPE_DEVICE && gotLoc.id == 1 && gotPrefetchFlags == 0);
	CHECK(cuCompatMemPrefetchAsync(0xf00d, 128, CU_DEVICE_CPU, stream) == CUDA_SUCCESS);
	CHECK(gotLoc.type == CU_MEM_LOCATION_TYPE_HOST);
#else
	CHECK(gotDev == 1);
#endif

	CHECK(cuCompatGraphAddDependencies(NULL, from, to, 2) == CUDA_SUCCESS);
	CHECK(gotFrom == from && gotTo == to && gotN == 2);
#if CUDA_VERSION >= 13000
	CHECK(gotEdgeData == NULL);
	gotEdgeData = (const CUgraphEdgeData *)1;
#endif

	CHECK(cuCompatGraphGetEdges(NULL, from, to, &numEdges) == CUDA_SUCCESS);
	CHECK(gotFrom == from && gotTo == to && gotNumEdges == &numEdges);
#if CUDA_VERSION >= 13000
	CHECK(gotEdgeData == NULL);
	CHECK(calls == 7);
#else
	CHECK(calls == 5);
#endif

	if (failed) {
		return 1;
	}
	printf("ok CUDA_VERSION=%d\n", CUDA_VERSION);
	return 0;
}
