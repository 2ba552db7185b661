// A stand-in for cuDNN 9's cudnn.h, written for this test (not NVIDIA's
// header): the types dnn/cudnn9.h and dnn/algorithm.c use, and none of what
// cuDNN 9.0 removed, as in cuDNN 9.
#ifndef FAKE_CUDNN_H
#define FAKE_CUDNN_H
#include <stddef.h>

#define CUDNN_MAJOR 9
#define CUDNN_MINOR 6

typedef enum { CUDNN_STATUS_SUCCESS = 0, CUDNN_STATUS_NOT_SUPPORTED = 3000 } cudnnStatus_t;
typedef enum { CUDNN_DATA_FLOAT = 0 } cudnnDataType_t;
typedef enum { CUDNN_DEFAULT_MATH = 0 } cudnnMathType_t;
typedef enum { CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM = 0 } cudnnConvolutionFwdAlgo_t;
typedef enum { CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 = 0 } cudnnConvolutionBwdFilterAlgo_t;
typedef enum { CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 = 0 } cudnnConvolutionBwdDataAlgo_t;
typedef enum { CUDNN_RNN_ALGO_STANDARD = 0 } cudnnRNNAlgo_t;
typedef enum { CUDNN_CTC_LOSS_ALGO_DETERMINISTIC = 0 } cudnnCTCLossAlgo_t;
typedef struct cudnnContext *cudnnHandle_t;
typedef struct cudnnRNNStruct *cudnnRNNDescriptor_t;
typedef struct cudnnTensorStruct *cudnnTensorDescriptor_t;
typedef struct cudnnFilterStruct *cudnnFilterDescriptor_t;

#endif
