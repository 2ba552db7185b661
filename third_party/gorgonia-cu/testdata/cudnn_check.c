// cudnn_check.c compiles dnn/cudnn9.h against a stand-in cudnn.h (testdata/
// cudnn8 or testdata/cudnn9, chosen by -I) with -Werror, calling every name
// it covers with the argument types dnn's Go files pass. Against cuDNN 9 it
// links and runs: each stub must answer NOT_SUPPORTED (destroys: SUCCESS).
// Against cuDNN 8 it is compiled only (-c): the real library defines them.
#include <stdio.h>
#include "cudnn9.h"
#include "algorithm.h"

static int failed;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failed = 1; } } while (0)

int main(void) {
	cudnnAlgorithmDescriptor_t desc = (cudnnAlgorithmDescriptor_t)1;
	cudnnAlgorithmPerformance_t perf = (cudnnAlgorithmPerformance_t)1;
	cudnnPersistentRNNPlan_t plan = (cudnnPersistentRNNPlan_t)1;
	cudnnRNNDescriptor_t rnn = NULL;
	void *out = NULL;
	cudnnAlgorithm_t algo = makeConvFwdAlgo(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
	cudnnStatus_t ns = CUDNN_STATUS_NOT_SUPPORTED, ok = CUDNN_STATUS_SUCCESS;

	CHECK(cudnnCreateAlgorithmDescriptor(&desc) == ns);
	CHECK(cudnnSetAlgorithmDescriptor(desc, algo) == ns);
	CHECK(cudnnDestroyAlgorithmDescriptor(desc) == ok);
	CHECK(cudnnCreateAlgorithmPerformance(&perf, 2) == ns);
	CHECK(cudnnSetAlgorithmPerformance(perf, desc, ok, 1.5f, 64) == ns);
	CHECK(cudnnDestroyAlgorithmPerformance(&perf, 2) == ok);
	CHECK(cudnnCreatePersistentRNNPlan(rnn, 8, CUDNN_DATA_FLOAT, &plan) == ns);
	CHECK(cudnnSetPersistentRNNPlan(rnn, plan) == ns);
	CHECK(cudnnDestroyPersistentRNNPlan(plan) == ok);
	CHECK(cudnnGetRNNLinLayerMatrixParams(NULL, rnn, 0, NULL, NULL, NULL, 0, NULL, &out) == ns);
	CHECK(cudnnGetRNNLinLayerBiasParams(NULL, rnn, 0, NULL, NULL, NULL, 0, NULL, &out) == ns);
	CHECK(cudnnSetRNNMatrixMathType(rnn, CUDNN_DEFAULT_MATH) == ns);
	CHECK(desc == NULL && perf == NULL && plan == NULL);
	if (failed) {
		return 1;
	}
	printf("ok CUDNN_MAJOR=%d\n", CUDNN_MAJOR);
	return 0;
}
