"""The CUDA side of tin_interlace.h, compiled with NVRTC through CuPy and compared with
the NumPy oracle. Runs only where CuPy and a GPU are present (never on the CPU CI); a
skip here means the CUDA path is UNVERIFIED on that machine."""

import os

import numpy as np
import pytest

from reference import interlace_np

cp = pytest.importorskip("cupy", reason="CuPy is needed to run the CUDA kernel test")
try:
    HAS_GPU = cp.cuda.runtime.getDeviceCount() > 0
except Exception:  # no driver
    HAS_GPU = False
pytestmark = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")

KERNEL_DIR = os.path.join(os.path.dirname(__file__), "..", "keras_tin", "ops", "kernels")

SOURCE = r"""
#include "tin_interlace.h"

__device__ tin::Dims make_dims(long long rows, long long pixels, int channels, int frames,
                               int interlaced, int delta) {
  tin::Dims d;
  d.rows = rows; d.pixels = pixels; d.channels = channels; d.frames = frames;
  d.interlaced = interlaced; d.group_size = interlaced / 4; d.delta = delta != 0;
  return d;
}

extern "C" __global__ void forward(const float* x, const float* off, const float* w, float* y,
                                   long long rows, long long pixels, int channels, int frames,
                                   int interlaced, int delta, long long total) {
  const tin::Dims d = make_dims(rows, pixels, channels, frames, interlaced, delta);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x)
    y[i] = tin::forward_element(x, off, w, d, i);
}

extern "C" __global__ void input_grad(const float* dy, const float* off, const float* w,
                                      float* dx, long long rows, long long pixels,
                                      int channels, int frames, int interlaced, int delta,
                                      long long total) {
  const tin::Dims d = make_dims(rows, pixels, channels, frames, interlaced, delta);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x)
    dx[i] = tin::input_grad_element(dy, off, w, d, i);
}

// One thread per (row, pixel, interlaced channel): the terms, summed on the host side.
extern "C" __global__ void param_terms(const float* x, const float* dy, const float* off,
                                       const float* w, float* dw_terms, float* db_terms,
                                       long long rows, long long pixels, int channels,
                                       int frames, int interlaced, int delta, long long total) {
  const tin::Dims d = make_dims(rows, pixels, channels, frames, interlaced, delta);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    const int c = (int)(i % interlaced);
    const long long rp = i / interlaced;
    const long long p = rp % pixels, row = rp / pixels;
    tin::param_grad_terms(x, dy, off, w, d, row / frames, (int)(row % frames), p, c,
                          &dw_terms[i], &db_terms[i]);
  }
}
"""


@pytest.fixture(scope="module")
def module():
    return cp.RawModule(code=SOURCE, options=("-std=c++17", f"-I{os.path.abspath(KERNEL_DIR)}"))


def _launch(kernel, total, *args):
    threads = 128
    blocks = min(1024, (total + threads - 1) // threads)
    kernel((blocks,), (threads,), args + (np.int64(total),))


def _loss(x, off, w, frames, up, delta):
    y = interlace_np(x, frames, off, w)
    if delta:
        f = x.shape[-1] // 4
        y = y[..., :f] - x[..., :f]
    return float(np.sum(y * up))


@pytest.mark.parametrize("delta", [0, 1])
def test_cuda_forward_and_gradients_match_numpy(module, delta):
    rng = np.random.default_rng(0)
    clips, frames, h, w_, c = 2, 4, 2, 3, 16
    f = c // 4
    x = rng.normal(size=(clips * frames, h, w_, c))
    # Off integers: a central difference across floor() would average two slopes.
    off = np.array([[0.3, 1.6, -0.7, -1.45], [1.2, -2.0 + 1e-3, 0.4, 1.999]])
    wt = rng.uniform(0.1, 2, size=(clips, frames, 4))
    rows, pixels = clips * frames, h * w_
    cout = f if delta else c
    dims = (np.int64(rows), np.int64(pixels), np.int32(c), np.int32(frames), np.int32(f),
            np.int32(delta))
    xg, og, wg = (cp.asarray(v, dtype=cp.float32) for v in (x, off, wt))

    y = cp.zeros((rows, h, w_, cout), cp.float32)
    _launch(module.get_function("forward"), y.size, xg, og, wg, y, *dims)
    ref = interlace_np(x, frames, off, wt)
    if delta:
        ref = ref[..., :f] - x[..., :f]
    np.testing.assert_allclose(cp.asnumpy(y), ref, atol=1e-5)

    up = rng.normal(size=(rows, h, w_, cout))
    upg = cp.asarray(up, dtype=cp.float32)
    dx = cp.zeros((rows, h, w_, c), cp.float32)
    _launch(module.get_function("input_grad"), dx.size, upg, og, wg, dx, *dims)
    terms = rows * pixels * f
    dw_t = cp.zeros(terms, cp.float32)
    db_t = cp.zeros(terms, cp.float32)
    _launch(module.get_function("param_terms"), terms, xg, upg, og, wg, dw_t, db_t, *dims)
    group = (np.arange(f) // (f // 4))[None, :]
    dw_t = cp.asnumpy(dw_t).reshape(clips, frames, pixels, f)
    db_t = cp.asnumpy(db_t).reshape(clips, frames, pixels, f)
    dweights = np.stack([dw_t[..., group[0] == g].sum(axis=(2, 3)) for g in range(4)], -1)
    doffsets = np.stack([db_t[..., group[0] == g].sum(axis=(1, 2, 3)) for g in range(4)], -1)

    eps = 1e-5
    for value, got in ((x, cp.asnumpy(dx)), (off, doffsets), (wt, dweights)):
        numeric = np.zeros_like(value)
        for pos in np.ndindex(value.shape):
            saved = value[pos]
            value[pos] = saved + eps
            lp = _loss(x, off, wt, frames, up, delta)
            value[pos] = saved - eps
            lm = _loss(x, off, wt, frames, up, delta)
            value[pos] = saved
            numeric[pos] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(got, numeric, rtol=1e-3, atol=1e-3)
