// CUDA kernels of KerasTinCorrelation / KerasTinCorrelationGrad: one thread per output
// element (forward) or per input-gradient element (df1, df2), each computed by
// correlation.h's forward_element / grad_f1_element / grad_f2_element, the functions
// tests/test_correlation_cuda_cupy.py checks against NumPy where a GPU is present.
// The gradients are gathers (no atomics), so results are deterministic.
// Compiled only when TensorFlow is a CUDA build and nvcc is found (custom_op.py).
// UNVERIFIED: written without access to a GPU; it has never run on one (see README).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "correlation.h"
#include "correlation_gpu.h"

namespace kt_corr {
namespace gpu {
namespace {

template <typename T>
struct Native { using type = T; };
template <>
struct Native<Half> { using type = __half; };
template <>
struct Native<BFloat16> { using type = __nv_bfloat16; };

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(__half* p, float v) { *p = __float2half(v); }
__device__ inline void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// A float view of 16-bit storage for correlation.h's static_cast<float> reads.
template <typename N>
struct FloatView {
  const N* p;
  __device__ float operator[](long long i) const { return to_float(p[i]); }
};

template <typename N>
__global__ void ForwardKernel(Dims d, const N* f1, const N* f2, N* y, long long total) {
  const FloatView<N> a{f1}, b{f2};
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    store(y + i, forward_element(a, b, d, i));
  }
}

template <typename N>
__global__ void GradKernel(Dims d, const N* g, const N* f1, const N* f2, N* df1, N* df2,
                           long long total) {
  const FloatView<N> gv{g}, a{f1}, b{f2};
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    store(df1 + i, grad_f1_element(gv, b, d, i));
    store(df2 + i, grad_f2_element(gv, a, d, i));
  }
}

int Blocks(long long total, int threads) {
  long long blocks = (total + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

template <typename T>
bool Forward(cudaStream_t stream, const Dims& d, const T* f1, const T* f2, T* y) {
  using N = typename Native<T>::type;
  const long long total = d.pixels() * d.out_channels();
  if (total == 0) return true;
  ForwardKernel<N><<<Blocks(total, 256), 256, 0, stream>>>(
      d, reinterpret_cast<const N*>(f1), reinterpret_cast<const N*>(f2),
      reinterpret_cast<N*>(y), total);
  return cudaGetLastError() == cudaSuccess;
}

template <typename T>
bool Grad(cudaStream_t stream, const Dims& d, const T* g, const T* f1, const T* f2, T* df1,
          T* df2) {
  using N = typename Native<T>::type;
  const long long total = d.pixels() * d.channels;
  if (total == 0) return true;
  GradKernel<N><<<Blocks(total, 256), 256, 0, stream>>>(
      d, reinterpret_cast<const N*>(g), reinterpret_cast<const N*>(f1),
      reinterpret_cast<const N*>(f2), reinterpret_cast<N*>(df1), reinterpret_cast<N*>(df2),
      total);
  return cudaGetLastError() == cudaSuccess;
}

template bool Forward<float>(cudaStream_t, const Dims&, const float*, const float*, float*);
template bool Forward<Half>(cudaStream_t, const Dims&, const Half*, const Half*, Half*);
template bool Forward<BFloat16>(cudaStream_t, const Dims&, const BFloat16*, const BFloat16*,
                                BFloat16*);
template bool Grad<float>(cudaStream_t, const Dims&, const float*, const float*, const float*,
                          float*, float*);
template bool Grad<Half>(cudaStream_t, const Dims&, const Half*, const Half*, const Half*,
                         Half*, Half*);
template bool Grad<BFloat16>(cudaStream_t, const Dims&, const BFloat16*, const BFloat16*,
                             const BFloat16*, BFloat16*, BFloat16*);

}  // namespace gpu
}  // namespace kt_corr
