"""The CUDA side of the correlation op (correlation.h's per-element functions, which the
kernels of correlation_op_gpu.cu.cc call), compiled with NVRTC through CuPy and compared
with the NumPy reference. Runs only where CuPy and a GPU are present (never on the CPU
CI); a skip here means the CUDA path is UNVERIFIED on that machine."""

import os

import numpy as np
import pytest

from test_correlation_op import correlation_np

KERNEL_DIR = os.path.join(os.path.dirname(__file__), "..", "keras_tin", "ops", "kernels")

# Kernels with the launch pattern of correlation_op_gpu.cu.cc (grid-stride loops, one
# thread per element), float32 and half storage. Also compiled by nvcc in
# test_correlation_op.py::test_cuda_sources_compile_with_nvcc.
SOURCE = r"""
#include <cuda_fp16.h>
#include "correlation.h"

struct HalfView {
  const __half* p;
  __device__ float operator[](long long i) const { return __half2float(p[i]); }
};

__device__ kt_corr::Dims make_dims(long long batch, int height, int width, int channels,
                                   int max_disp) {
  kt_corr::Dims d;
  d.batch = batch; d.height = height; d.width = width; d.channels = channels;
  d.max_disp = max_disp;
  return d;
}

#define GRID_STRIDE(i, total)                                                      \
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;  \
       i += (long long)blockDim.x * gridDim.x)

extern "C" __global__ void forward(const float* f1, const float* f2, float* y,
                                   long long batch, int height, int width, int channels,
                                   int max_disp, long long total) {
  const kt_corr::Dims d = make_dims(batch, height, width, channels, max_disp);
  GRID_STRIDE(i, total) y[i] = kt_corr::forward_element(f1, f2, d, i);
}

extern "C" __global__ void grads(const float* g, const float* f1, const float* f2,
                                 float* df1, float* df2, long long batch, int height,
                                 int width, int channels, int max_disp, long long total) {
  const kt_corr::Dims d = make_dims(batch, height, width, channels, max_disp);
  GRID_STRIDE(i, total) {
    df1[i] = kt_corr::grad_f1_element(g, f2, d, i);
    df2[i] = kt_corr::grad_f2_element(g, f1, d, i);
  }
}

extern "C" __global__ void forward_half(const __half* f1, const __half* f2, __half* y,
                                        long long batch, int height, int width,
                                        int channels, int max_disp, long long total) {
  const kt_corr::Dims d = make_dims(batch, height, width, channels, max_disp);
  const HalfView a{f1}, b{f2};
  GRID_STRIDE(i, total) y[i] = __float2half(kt_corr::forward_element(a, b, d, i));
}
"""


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy", reason="CuPy is needed to run the CUDA kernel test")
    try:
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver
        has_gpu = False
    if not has_gpu:
        pytest.skip("no CUDA GPU")
    return cupy


@pytest.fixture(scope="module")
def module(cp):
    return cp.RawModule(code=SOURCE, options=("-std=c++17", f"-I{os.path.abspath(KERNEL_DIR)}"))


def _launch(kernel, total, *args):
    threads = 128
    blocks = min(1024, (total + threads - 1) // threads)
    kernel((blocks,), (threads,), args + (np.int64(total),))


@pytest.mark.parametrize("shape,d", [((2, 5, 6, 3), 2), ((1, 9, 7, 20), 7), ((2, 4, 4, 64), 1)])
def test_cuda_forward_and_gradients_match_numpy(cp, module, shape, d):
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=shape).astype(np.float32)
    f2 = rng.normal(size=shape).astype(np.float32)
    b, h, w, c = shape
    k2 = (2 * d + 1) ** 2
    dims = (np.int64(b), np.int32(h), np.int32(w), np.int32(c), np.int32(d))
    a1, a2 = cp.asarray(f1), cp.asarray(f2)
    y = cp.zeros((b, h, w, k2), cp.float32)
    _launch(module.get_function("forward"), y.size, a1, a2, y, *dims)
    np.testing.assert_allclose(cp.asnumpy(y), correlation_np(f1, f2, d), atol=2e-5, rtol=1e-5)

    # Gradients of sum(y * g): the forward is bilinear, so d/df1 and d/df2 follow from
    # the reference applied to unit vectors; check them with finite-size directional
    # derivatives of the reference instead (exact for a bilinear map).
    g = rng.normal(size=(b, h, w, k2)).astype(np.float32)
    df1 = cp.zeros_like(a1)
    df2 = cp.zeros_like(a2)
    _launch(module.get_function("grads"), a1.size, cp.asarray(g), a1, a2, df1, df2, *dims)
    for _ in range(3):
        v = rng.normal(size=shape)
        # <df1, v> = sum(correlation(v, f2) * g); <df2, v> = sum(correlation(f1, v) * g).
        want1 = np.sum(correlation_np(v, f2, d) * g)
        want2 = np.sum(correlation_np(f1, v, d) * g)
        assert np.sum(cp.asnumpy(df1) * v) == pytest.approx(want1, rel=1e-4, abs=1e-3)
        assert np.sum(cp.asnumpy(df2) * v) == pytest.approx(want2, rel=1e-4, abs=1e-3)


def test_cuda_half_storage_accumulates_in_float(cp, module):
    rng = np.random.default_rng(1)
    shape, d = (1, 6, 5, 40), 3
    f1 = rng.normal(size=shape).astype(np.float16)
    f2 = rng.normal(size=shape).astype(np.float16)
    y = cp.zeros(shape[:3] + ((2 * d + 1) ** 2,), cp.float16)
    dims = (np.int64(1), np.int32(6), np.int32(5), np.int32(40), np.int32(d))
    _launch(module.get_function("forward_half"), y.size, cp.asarray(f1), cp.asarray(f2), y,
            *dims)
    np.testing.assert_allclose(cp.asnumpy(y).astype(np.float32), correlation_np(f1, f2, d),
                               atol=2e-2, rtol=2e-2)
