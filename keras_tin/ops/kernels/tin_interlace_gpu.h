// Launchers of the CUDA kernels (tin_interlace_op_gpu.cu.cc), declared without CUDA or
// TensorFlow headers so that tin_interlace_op.cc, compiled by the host compiler, can call
// them. UNVERIFIED: no GPU was available when this was written (see README).
#ifndef KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_GPU_H_
#define KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_GPU_H_

#include "tin_interlace.h"

typedef struct CUstream_st* cudaStream_t;

namespace tin {
namespace gpu {

// 16-bit storage tags, bit-compatible with Eigen::half / __half and
// tensorflow::bfloat16 / __nv_bfloat16.
struct Half { unsigned short bits; };
struct BFloat16 { unsigned short bits; };

template <typename T>
bool Forward(cudaStream_t stream, const Dims& d, const T* x, const float* offsets,
             const float* weights, T* y);

template <typename T>
bool Grad(cudaStream_t stream, const Dims& d, const T* dy, const T* x, const float* offsets,
          const float* weights, T* dx, float* doffsets, float* dweights);

}  // namespace gpu
}  // namespace tin

#endif  // KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_GPU_H_
