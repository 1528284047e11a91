// The arithmetic of the local correlation (MotionSqueeze's cost volume, ZOO_SPEC.md
// section 1 step 3), one output or input-gradient element at a time. Shared by the CUDA
// kernels (correlation_op_gpu.cu.cc) and the CuPy test (tests/test_correlation_cuda_cupy.py);
// the CPU kernel (correlation_op.cc) uses vectorised loops of the same sums and is
// checked against the same NumPy reference. Depends on no header, so NVRTC compiles it.
//
// Layout, channels last: f1, f2 (B, H, W, C); y (B, H, W, K*K) with K = 2 d + 1, d the
// max displacement:
//   y[b, h, w, (dy + d) K + (dx + d)] = sum_c f1[b, h, w, c] f2[b, h + dy, w + dx, c],
// zero where (h + dy, w + dx) lies outside the image. Gradients, for an upstream g:
//   df1[b, h, w, c] = sum_{dy, dx valid} g[b, h, w, k] f2[b, h + dy, w + dx, c]
//   df2[b, h, w, c] = sum_{dy, dx valid} g[b, h - dy, w - dx, k] f1[b, h - dy, w - dx, c]
// Sums are accumulated in float whatever the storage type.
#ifndef KERAS_TIN_OPS_KERNELS_CORRELATION_H_
#define KERAS_TIN_OPS_KERNELS_CORRELATION_H_

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define KT_CORR_HD __host__ __device__
#else
#define KT_CORR_HD
#endif

namespace kt_corr {

struct Dims {
  long long batch;  // B
  int height;       // H
  int width;        // W
  int channels;     // C
  int max_disp;     // d

  KT_CORR_HD int patch() const { return 2 * max_disp + 1; }
  KT_CORR_HD int out_channels() const { return patch() * patch(); }
  KT_CORR_HD long long pixels() const { return batch * height * width; }
};

// y element i of (B, H, W, K*K).
template <typename A, typename B>
KT_CORR_HD float forward_element(const A& f1, const B& f2, const Dims& d, long long i) {
  const int k2 = d.out_channels();
  const int k = static_cast<int>(i % k2);
  const long long p = i / k2;  // (b, h, w) flat
  const int w = static_cast<int>(p % d.width);
  const long long bh = p / d.width;
  const int h = static_cast<int>(bh % d.height);
  const int hh = h + k / d.patch() - d.max_disp;
  const int ww = w + k % d.patch() - d.max_disp;
  if (hh < 0 || hh >= d.height || ww < 0 || ww >= d.width) return 0.0f;
  const long long q = (bh - h + hh) * d.width + ww;  // (b, hh, ww) flat
  float acc = 0.0f;
  for (int c = 0; c < d.channels; ++c) {
    acc += static_cast<float>(f1[p * d.channels + c]) * static_cast<float>(f2[q * d.channels + c]);
  }
  return acc;
}

// df1 element i of (B, H, W, C): g is the upstream gradient (B, H, W, K*K).
template <typename G, typename A>
KT_CORR_HD float grad_f1_element(const G& g, const A& f2, const Dims& d, long long i) {
  const int c = static_cast<int>(i % d.channels);
  const long long p = i / d.channels;
  const int w = static_cast<int>(p % d.width);
  const long long bh = p / d.width;
  const int h = static_cast<int>(bh % d.height);
  const int k2 = d.out_channels();
  float acc = 0.0f;
  for (int ky = 0; ky < d.patch(); ++ky) {
    const int hh = h + ky - d.max_disp;
    if (hh < 0 || hh >= d.height) continue;
    for (int kx = 0; kx < d.patch(); ++kx) {
      const int ww = w + kx - d.max_disp;
      if (ww < 0 || ww >= d.width) continue;
      const long long q = (bh - h + hh) * d.width + ww;
      acc += static_cast<float>(g[p * k2 + ky * d.patch() + kx]) *
             static_cast<float>(f2[q * d.channels + c]);
    }
  }
  return acc;
}

// df2 element i of (B, H, W, C): the outputs (h - dy, w - dx) that read f2[b, h, w].
template <typename G, typename A>
KT_CORR_HD float grad_f2_element(const G& g, const A& f1, const Dims& d, long long i) {
  const int c = static_cast<int>(i % d.channels);
  const long long p = i / d.channels;
  const int w = static_cast<int>(p % d.width);
  const long long bh = p / d.width;
  const int h = static_cast<int>(bh % d.height);
  const int k2 = d.out_channels();
  float acc = 0.0f;
  for (int ky = 0; ky < d.patch(); ++ky) {
    const int hs = h - (ky - d.max_disp);  // the output row that reads this one at ky
    if (hs < 0 || hs >= d.height) continue;
    for (int kx = 0; kx < d.patch(); ++kx) {
      const int ws = w - (kx - d.max_disp);
      if (ws < 0 || ws >= d.width) continue;
      const long long q = (bh - h + hs) * d.width + ws;
      acc += static_cast<float>(g[q * k2 + ky * d.patch() + kx]) *
             static_cast<float>(f1[q * d.channels + c]);
    }
  }
  return acc;
}

}  // namespace kt_corr

#endif  // KERAS_TIN_OPS_KERNELS_CORRELATION_H_
