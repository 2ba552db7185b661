// cuda13.h: the five driver calls whose signatures CUDA 13 changed, behind one
// wrapper each that keeps gorgonia/cu's CUDA 10-12 argument lists. Each
// wrapper picks the form by CUDA_VERSION, so this copy builds against CUDA 12
// headers and against CUDA 13 headers. swarmtrain patch: see PATCHES.md.
#ifndef GORGONIA_CU_CUDA13_H
#define GORGONIA_CU_CUDA13_H

#include <stddef.h>
#include <cuda.h>

// CUDA 13: cuCtxCreate(CUcontext*, CUctxCreateParams*, unsigned int, CUdevice)
// (cuCtxCreate_v4). NULL params give the context CUDA 12 made: no execution
// affinity, no CIG.
static inline CUresult cuCompatCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev) {
#if CUDA_VERSION >= 13000
	return cuCtxCreate(pctx, NULL, flags, dev);
#else
	return cuCtxCreate(pctx, flags, dev);
#endif
}

#if CUDA_VERSION >= 13000
// cuCompatLocation turns the CUDA 12 "device ordinal or CU_DEVICE_CPU" argument
// into the CUmemLocation CUDA 13 takes: CU_DEVICE_CPU (-1) means host memory,
// any other value the device with that ordinal.
static inline CUmemLocation cuCompatLocation(CUdevice dev) {
	CUmemLocation loc;
	if (dev == CU_DEVICE_CPU) {
		loc.type = CU_MEM_LOCATION_TYPE_HOST;
		loc.id = 0; // ignored for the host
	} else {
		loc.type = CU_MEM_LOCATION_TYPE_DEVICE;
		loc.id = (int)dev;
	}
	return loc;
}
#endif

// CUDA 13: cuMemAdvise(CUdeviceptr, size_t, CUmem_advise, CUmemLocation).
static inline CUresult cuCompatMemAdvise(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUdevice dev) {
#if CUDA_VERSION >= 13000
	return cuMemAdvise(devPtr, count, advice, cuCompatLocation(dev));
#else
	return cuMemAdvise(devPtr, count, advice, dev);
#endif
}

// CUDA 13: cuMemPrefetchAsync(CUdeviceptr, size_t, CUmemLocation, unsigned int
// flags, CUstream). Flags must be 0.
static inline CUresult cuCompatMemPrefetchAsync(CUdeviceptr devPtr, size_t count, CUdevice dst, CUstream stream) {
#if CUDA_VERSION >= 13000
	return cuMemPrefetchAsync(devPtr, count, cuCompatLocation(dst), 0, stream);
#else
	return cuMemPrefetchAsync(devPtr, count, dst, stream);
#endif
}

// CUDA 13: cuGraphAddDependencies(CUgraph, const CUgraphNode*, const
// CUgraphNode*, const CUgraphEdgeData*, size_t). NULL edge data adds plain
// (default, zeroed) edges, the only kind CUDA 12's form could add.
static inline CUresult cuCompatGraphAddDependencies(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, size_t n) {
#if CUDA_VERSION >= 13000
	return cuGraphAddDependencies(g, from, to, NULL, n);
#else
	return cuGraphAddDependencies(g, from, to, n);
#endif
}

// CUDA 13: cuGraphGetEdges(CUgraph, CUgraphNode*, CUgraphNode*, CUgraphEdgeData*,
// size_t*). With NULL edge data the driver returns CUDA_ERROR_LOSSY_QUERY if an
// edge carries non-default data; this package only makes default edges.
static inline CUresult cuCompatGraphGetEdges(CUgraph g, CUgraphNode *from, CUgraphNode *to, size_t *numEdges) {
#if CUDA_VERSION >= 13000
	return cuGraphGetEdges(g, from, to, NULL, numEdges);
#else
	return cuGraphGetEdges(g, from, to, numEdges);
#endif
}

#endif // GORGONIA_CU_CUDA13_H
