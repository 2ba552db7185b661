// cudnn9.h: what cuDNN 9.0 removed and gorgonia/cu's dnn package still names.
// cuDNN 9 dropped the algorithm descriptor and algorithm performance objects,
// persistent RNN plans, cudnnGetRNNLinLayerMatrixParams/BiasParams and
// cudnnSetRNNMatrixMathType (deprecated since cuDNN 8). None of them is on the
// path gorgonia's CUDA engine takes (convolution, pooling, activation,
// batch norm, dropout), so against cuDNN 9 they are declared here as stubs
// that answer CUDNN_STATUS_NOT_SUPPORTED; against cuDNN 7/8 this header only
// includes <cudnn.h>. swarmtrain patch: see PATCHES.md.
#ifndef GORGONIA_CU_CUDNN9_H
#define GORGONIA_CU_CUDNN9_H

#include <stddef.h>
#include <cudnn.h>

#if CUDNN_MAJOR >= 9

typedef struct cudnnAlgorithmStruct *cudnnAlgorithmDescriptor_t;
typedef struct cudnnAlgorithmPerformanceStruct *cudnnAlgorithmPerformance_t;
typedef struct cudnnPersistentRNNPlan *cudnnPersistentRNNPlan_t;

// The cuDNN 8 layout, so algorithm.c's constructors still compile.
typedef struct cudnnAlgorithmUnionStruct {
	union {
		cudnnConvolutionFwdAlgo_t convFwdAlgo;
		cudnnConvolutionBwdFilterAlgo_t convBwdFilterAlgo;
		cudnnConvolutionBwdDataAlgo_t convBwdDataAlgo;
		cudnnRNNAlgo_t RNNAlgo;
		cudnnCTCLossAlgo_t CTCLossAlgo;
	} algo;
} cudnnAlgorithm_t;

static inline cudnnStatus_t cudnnCreateAlgorithmDescriptor(cudnnAlgorithmDescriptor_t *d) {
	*d = NULL;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnSetAlgorithmDescriptor(cudnnAlgorithmDescriptor_t d, cudnnAlgorithm_t a) {
	(void)d; (void)a;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnDestroyAlgorithmDescriptor(cudnnAlgorithmDescriptor_t d) {
	(void)d;
	return CUDNN_STATUS_SUCCESS;
}
static inline cudnnStatus_t cudnnCreateAlgorithmPerformance(cudnnAlgorithmPerformance_t *p, int n) {
	(void)n;
	*p = NULL;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnSetAlgorithmPerformance(cudnnAlgorithmPerformance_t p, cudnnAlgorithmDescriptor_t d, cudnnStatus_t s, float t, size_t mem) {
	(void)p; (void)d; (void)s; (void)t; (void)mem;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnDestroyAlgorithmPerformance(cudnnAlgorithmPerformance_t *p, int n) {
	(void)p; (void)n;
	return CUDNN_STATUS_SUCCESS;
}

static inline cudnnStatus_t cudnnCreatePersistentRNNPlan(cudnnRNNDescriptor_t r, const int minibatch, const cudnnDataType_t dt, cudnnPersistentRNNPlan_t *plan) {
	(void)r; (void)minibatch; (void)dt;
	*plan = NULL;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnSetPersistentRNNPlan(cudnnRNNDescriptor_t r, cudnnPersistentRNNPlan_t plan) {
	(void)r; (void)plan;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnDestroyPersistentRNNPlan(cudnnPersistentRNNPlan_t plan) {
	(void)plan;
	return CUDNN_STATUS_SUCCESS;
}

// cuDNN 9 replacement: cudnnGetRNNWeightParams.
static inline cudnnStatus_t cudnnGetRNNLinLayerMatrixParams(cudnnHandle_t h, const cudnnRNNDescriptor_t r, const int pseudoLayer, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w, const void *wp, const int linLayerID, cudnnFilterDescriptor_t matDesc, void **mat) {
	(void)h; (void)r; (void)pseudoLayer; (void)x; (void)w; (void)wp; (void)linLayerID; (void)matDesc; (void)mat;
	return CUDNN_STATUS_NOT_SUPPORTED;
}
static inline cudnnStatus_t cudnnGetRNNLinLayerBiasParams(cudnnHandle_t h, const cudnnRNNDescriptor_t r, const int pseudoLayer, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w, const void *wp, const int linLayerID, cudnnFilterDescriptor_t biasDesc, void **bias) {
	(void)h; (void)r; (void)pseudoLayer; (void)x; (void)w; (void)wp; (void)linLayerID; (void)biasDesc; (void)bias;
	return CUDNN_STATUS_NOT_SUPPORTED;
}

// cuDNN 9: the math type is an argument of cudnnSetRNNDescriptor_v8.
static inline cudnnStatus_t cudnnSetRNNMatrixMathType(cudnnRNNDescriptor_t r, cudnnMathType_t m) {
	(void)r; (void)m;
	return CUDNN_STATUS_NOT_SUPPORTED;
}

#endif // CUDNN_MAJOR >= 9
#endif // GORGONIA_CU_CUDNN9_H
