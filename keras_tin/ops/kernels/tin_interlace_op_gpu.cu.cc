// CUDA kernels of TinInterlace / TinInterlaceGrad. Every element is computed by
// tin_interlace.h's forward_element / input_grad_element / param_grad_terms, the same
// functions tests/test_cuda_kernel_cupy.py checks against NumPy on a GPU.
// Compiled only when TensorFlow is a CUDA build and nvcc is found (custom_op.py).
// UNVERIFIED: written without access to a GPU; see README "custom op".
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "tin_interlace.h"
#include "tin_interlace_gpu.h"

namespace tin {
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

// A float view of 16-bit storage so that tin::load (static_cast<float>) works.
template <typename N>
struct FloatView {
  const N* p;
  __device__ float operator[](long long i) const { return to_float(p[i]); }
};

template <typename N>
__global__ void ForwardKernel(Dims d, const N* x, const float* offsets, const float* weights,
                              N* y, long long total) {
  const FloatView<N> xv{x};
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    store(y + i, forward_element(xv, offsets, weights, d, i));
  }
}

template <typename N>
__global__ void InputGradKernel(Dims d, const N* dy, const float* offsets,
                                const float* weights, N* dx, long long total) {
  const FloatView<N> gv{dy};
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    store(dx + i, input_grad_element(gv, offsets, weights, d, i));
  }
}

// One block per output row (n, t): reduce the 4 groups' weight and offset terms.
template <typename N>
__global__ void ParamGradKernel(Dims d, const N* x, const N* dy, const float* offsets,
                                const float* weights, float* doffsets, float* dweights) {
  __shared__ float dw_acc[kGroups];
  __shared__ float db_acc[kGroups];
  if (threadIdx.x < kGroups) {
    dw_acc[threadIdx.x] = 0.0f;
    db_acc[threadIdx.x] = 0.0f;
  }
  __syncthreads();
  const long long row = blockIdx.x;
  const long long n = row / d.frames;
  const int t = static_cast<int>(row % d.frames);
  float dw_local[kGroups] = {0.0f, 0.0f, 0.0f, 0.0f};
  float db_local[kGroups] = {0.0f, 0.0f, 0.0f, 0.0f};
  const long long count = d.pixels * d.interlaced;
  const FloatView<N> xv{x}, gv{dy};
  for (long long j = threadIdx.x; j < count; j += blockDim.x) {
    const long long p = j / d.interlaced;
    const int c = static_cast<int>(j % d.interlaced);
    float dw_term, db_term;
    param_grad_terms(xv, gv, offsets, weights, d, n, t, p, c, &dw_term, &db_term);
    dw_local[c / d.group_size] += dw_term;
    db_local[c / d.group_size] += db_term;
  }
  for (int g = 0; g < kGroups; ++g) {
    atomicAdd(&dw_acc[g], dw_local[g]);
    atomicAdd(&db_acc[g], db_local[g]);
  }
  __syncthreads();
  if (threadIdx.x < kGroups) {
    dweights[row * kGroups + threadIdx.x] = dw_acc[threadIdx.x];
    atomicAdd(&doffsets[n * kGroups + threadIdx.x], db_acc[threadIdx.x]);
  }
}

int Blocks(long long total, int threads) {
  long long blocks = (total + threads - 1) / threads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace

template <typename T>
bool Forward(cudaStream_t stream, const Dims& d, const T* x, const float* offsets,
             const float* weights, T* y) {
  using N = typename Native<T>::type;
  const long long total = d.rows * d.pixels * d.out_channels();
  if (total == 0) return true;
  ForwardKernel<N><<<Blocks(total, 256), 256, 0, stream>>>(
      d, reinterpret_cast<const N*>(x), offsets, weights, reinterpret_cast<N*>(y), total);
  return cudaGetLastError() == cudaSuccess;
}

template <typename T>
bool Grad(cudaStream_t stream, const Dims& d, const T* dy, const T* x, const float* offsets,
          const float* weights, T* dx, float* doffsets, float* dweights) {
  using N = typename Native<T>::type;
  if (cudaMemsetAsync(doffsets, 0, sizeof(float) * d.clips() * kGroups, stream) != cudaSuccess)
    return false;
  if (cudaMemsetAsync(dweights, 0, sizeof(float) * d.rows * kGroups, stream) != cudaSuccess)
    return false;
  const long long total = d.rows * d.pixels * d.channels;
  if (total == 0) return true;
  InputGradKernel<N><<<Blocks(total, 256), 256, 0, stream>>>(
      d, reinterpret_cast<const N*>(dy), offsets, weights, reinterpret_cast<N*>(dx), total);
  ParamGradKernel<N><<<static_cast<unsigned>(d.rows), 256, 0, stream>>>(
      d, reinterpret_cast<const N*>(x), reinterpret_cast<const N*>(dy), offsets, weights,
      doffsets, dweights);
  return cudaGetLastError() == cudaSuccess;
}

template bool Forward<float>(cudaStream_t, const Dims&, const float*, const float*,
                             const float*, float*);
template bool Forward<Half>(cudaStream_t, const Dims&, const Half*, const float*,
                            const float*, Half*);
template bool Forward<BFloat16>(cudaStream_t, const Dims&, const BFloat16*, const float*,
                                const float*, BFloat16*);
template bool Grad<float>(cudaStream_t, const Dims&, const float*, const float*,
                          const float*, const float*, float*, float*, float*);
template bool Grad<Half>(cudaStream_t, const Dims&, const Half*, const Half*, const float*,
                         const float*, Half*, float*, float*);
template bool Grad<BFloat16>(cudaStream_t, const Dims&, const BFloat16*, const BFloat16*,
                             const float*, const float*, BFloat16*, float*, float*);

}  // namespace gpu
}  // namespace tin
