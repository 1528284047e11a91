// Launchers of the CUDA correlation kernels (correlation_op_gpu.cu.cc), declared without
// CUDA or TensorFlow headers so that correlation_op.cc (host compiler) can call them.
// UNVERIFIED on a GPU: no GPU was available when this was written (see README).
#ifndef KERAS_TIN_OPS_KERNELS_CORRELATION_GPU_H_
#define KERAS_TIN_OPS_KERNELS_CORRELATION_GPU_H_

#include "correlation.h"
#include "tin_interlace_gpu.h"  // cudaStream_t and the Half / BFloat16 storage tags

namespace kt_corr {
namespace gpu {

using tin::gpu::BFloat16;
using tin::gpu::Half;

template <typename T>
bool Forward(cudaStream_t stream, const Dims& d, const T* f1, const T* f2, T* y);

template <typename T>
bool Grad(cudaStream_t stream, const Dims& d, const T* g, const T* f1, const T* f2, T* df1,
          T* df2);

}  // namespace gpu
}  // namespace kt_corr

#endif  // KERAS_TIN_OPS_KERNELS_CORRELATION_GPU_H_
