// A stand-in for CUDA 12's cuda.h, written for this test (not NVIDIA's
// header): the same types as cuda13/cuda.h and the five prototypes in the
// forms CUDA 10 to 12 declare by default, the forms gorgonia/cu v0.9.6 was
// written for.
#ifndef FAKE_CUDA_H
#define FAKE_CUDA_H
#include <stddef.h>

#define CUDA_VERSION 12080

typedef enum cudaError_enum { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1 } CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphNode_st *CUgraphNode;
#define CU_DEVICE_CPU ((CUdevice)-1)

typedef enum CUmem_advise_enum {
	CU_MEM_ADVISE_SET_READ_MOSTLY = 1,
	CU_MEM_ADVISE_SET_PREFERRED_LOCATION = 3,
} CUmem_advise;

#define cuCtxCreate cuCtxCreate_v2

CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev);
CUresult cuMemAdvise(CUdeviceptr devPtr, size_t count, CUmem_advise advice, CUdevice device);
CUresult cuMemPrefetchAsync(CUdeviceptr devPtr, size_t count, CUdevice dstDevice, CUstream hStream);
CUresult cuGraphAddDependencies(CUgraph hGraph, const CUgraphNode *from, const CUgraphNode *to, size_t numDependencies);
CUresult cuGraphGetEdges(CUgraph hGraph, CUgraphNode *from, CUgraphNode *to, size_t *numEdges);

#endif
