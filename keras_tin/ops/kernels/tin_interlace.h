// The arithmetic of TIN's interlace (TIN_SPEC.md), shared by the C++ CPU kernel,
// the CUDA kernel and a standalone CUDA test. It depends on nothing but <math.h>, so
// nvcc can compile it without TensorFlow's headers.
//
// Layout: x is (rows = N*T, pixels = H*W, C), channels last; the first F = C / shift_div
// channels form 4 groups of F/4. offsets are (N, 4) per group, weights (N, T, 4) per
// output frame and group. "full" output has C channels (pass-through copied), "delta"
// output only the F interlaced ones, minus x (Z - X_F).
#ifndef KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_H_
#define KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_H_

#if !defined(__CUDACC_RTC__)  // NVRTC (CuPy) has floorf built in, and no math.h
#include <math.h>
#endif

#if defined(__CUDACC__)
#define TIN_HD __host__ __device__
#else
#define TIN_HD
#endif

namespace tin {

constexpr int kGroups = 4;

struct Dims {
  long long rows;    // N * T
  long long pixels;  // H * W
  int channels;      // C
  int frames;        // T
  int interlaced;    // F = C / shift_div
  int group_size;    // F / 4
  bool delta;        // output Z - X_F (F channels) instead of the full tensor

  TIN_HD long long clips() const { return rows / frames; }
  // Channels of the op's output, and so of the incoming gradient.
  TIN_HD int out_channels() const { return delta ? interlaced : channels; }
};

// The two taps of one group at one frame: value = c0 * v[f0] + c1 * v[f1].
// A tap that falls outside the clip (zero fill) gets coefficient 0 and frame `self`,
// so that callers can always read a valid row and never branch per element.
struct Taps {
  int f0, f1;
  float c0, c1;
};

// Non-finite offsets and weights (NaN, +-Inf) follow the portable keras.ops path, which
// builds each (clip, group) as a dense T x T matrix w[t] * ((1 - a) [t - s == k] +
// a [t - s == k + 1]) and multiplies it with X, so that a non-finite value reaches every
// entry it multiplies, zeros included:
//   forward: y[n, t, group g] is NaN when offsets[n, g] or weights[n, t, g] is not finite;
//   input gradient: dx[n, :, group g] is NaN when offsets[n, g] or any weights[n, :, g]
//     is not finite (every column of the matrix then holds a NaN);
//   weight gradient: dweights[n, :, g] is NaN when offsets[n, g] is not finite;
//   offset gradient: doffsets[n, g] is NaN when any weights[n, :, g] is not finite; a
//     non-finite offset itself gets a finite gradient (0: no frame is a tap, like the
//     portable path's equality masks, which a NaN k never hits).
// (With an infinite weight the dense matrix holds Inf * 1 = Inf next to Inf * 0 = NaN, so
// the portable path's gradients mix Inf and NaN where the op gives NaN: both non-finite.)
// This relies on IEEE NaN semantics: never compile these kernels with -ffast-math.
// `poison(v)` is v - v: 0 for a finite v, NaN otherwise; adding it to a coefficient
// propagates a non-finite parameter without a branch per element.
TIN_HD inline float poison(float v) { return v - v; }

// A shift that puts every tap outside any clip: used for non-finite offsets, and the
// bound of finite ones (floor(b) of a huge b would not fit in an int: undefined
// behaviour). Both taps t - k and t - k - 1 then miss every frame (frames < 2^24).
constexpr float kFarShift = 16777216.0f;  // 2^24: exact in float and int

// b = k + a with integer k = floor(b) and fraction a in [0, 1). A non-finite b gives
// k = kFarShift (no tap) and a = NaN; |b| >= 2^24 is clamped to +-2^24 (no tap either).
TIN_HD inline void split_offset(float b, int* k, float* a) {
  float fk = floorf(b);
  if (!(poison(fk) == 0.0f)) {  // NaN or +-Inf: never cast to int (undefined behaviour)
    *k = static_cast<int>(kFarShift);
    *a = poison(b);  // NaN
    return;
  }
  if (fk > kFarShift) fk = kFarShift;
  if (fk < -kFarShift) fk = -kFarShift;
  *k = static_cast<int>(fk);
  *a = b - fk;
}

// A tap outside the clip reads frame `self` with coefficient 0, unless the coefficient
// is NaN (a non-finite parameter), which stays NaN.
TIN_HD inline void clip_tap(int frames, int self, int* f, float* c) {
  if (*f < 0 || *f >= frames) {
    *f = self;
    *c = *c == *c ? 0.0f : *c;
  }
}

// 0, or NaN when offsets[n, g] or any weights[n, :, g] is not finite (see above).
TIN_HD inline float group_poison(const float* offsets, const float* weights, int frames,
                                 long long n, int g) {
  float p = poison(offsets[n * kGroups + g]);
  for (int t = 0; t < frames; ++t) p += poison(weights[(n * frames + t) * kGroups + g]);
  return p;
}

// Forward: Z[t] = w[t] * ((1 - a) X[t - k] + a X[t - k - 1]).
TIN_HD inline Taps forward_taps(const float* offsets, const float* weights, int frames,
                                long long n, int t, int g) {
  int k;
  float a;
  split_offset(offsets[n * kGroups + g], &k, &a);
  const float w = weights[(n * frames + t) * kGroups + g];
  Taps taps;
  taps.f0 = t - k;
  taps.c0 = w * (1.0f - a);
  taps.f1 = t - k - 1;
  taps.c1 = w * a;
  clip_tap(frames, t, &taps.f0, &taps.c0);
  clip_tap(frames, t, &taps.f1, &taps.c1);
  const float bad = poison(a) + poison(w);  // NaN for a non-finite offset or weight
  taps.c0 += bad;
  taps.c1 += bad;
  return taps;
}

// Adjoint of the forward map for input frame s: X[s] reaches output t = s + k with
// (1 - a) and t = s + k + 1 with a, each scaled by that OUTPUT frame's weight.
TIN_HD inline Taps adjoint_taps(const float* offsets, const float* weights, int frames,
                                long long n, int s, int g) {
  int k;
  float a;
  split_offset(offsets[n * kGroups + g], &k, &a);
  Taps taps;
  taps.f0 = s + k;
  taps.f1 = s + k + 1;
  taps.c0 = 0.0f;
  taps.c1 = 0.0f;
  if (taps.f0 >= 0 && taps.f0 < frames)
    taps.c0 = (1.0f - a) * weights[(n * frames + taps.f0) * kGroups + g];
  if (taps.f1 >= 0 && taps.f1 < frames)
    taps.c1 = a * weights[(n * frames + taps.f1) * kGroups + g];
  clip_tap(frames, s, &taps.f0, &taps.c0);
  clip_tap(frames, s, &taps.f1, &taps.c1);
  // A non-finite parameter anywhere in the (clip, group) makes every input frame's
  // gradient NaN, as the dense matrix's transpose does (O(T) per call: T is small).
  const float bad = group_poison(offsets, weights, frames, n, g);
  taps.c0 += bad;
  taps.c1 += bad;
  return taps;
}

// P is a pointer or any indexable accessor (the CUDA file passes a float view of
// 16-bit storage).
template <typename P>
TIN_HD inline float load(const P& p, long long i) {
  return static_cast<float>(p[i]);
}

// One element of the forward output at flat index `index` (over rows, pixels,
// out_channels). Used one element per thread on the GPU and by tests.
template <typename P>
TIN_HD inline float forward_element(P x, const float* offsets, const float* weights,
                                    const Dims& d, long long index) {
  const int cout = d.out_channels();
  const int c = static_cast<int>(index % cout);
  const long long rp = index / cout;  // row * pixels + pixel
  const long long p = rp % d.pixels;
  const long long row = rp / d.pixels;
  if (c >= d.interlaced) return load(x, rp * d.channels + c);  // pass-through (full only)
  const long long n = row / d.frames;
  const int t = static_cast<int>(row % d.frames);
  const Taps tp = forward_taps(offsets, weights, d.frames, n, t, c / d.group_size);
  const long long base = n * d.frames;
  float v = tp.c0 * load(x, ((base + tp.f0) * d.pixels + p) * d.channels + c) +
            tp.c1 * load(x, ((base + tp.f1) * d.pixels + p) * d.channels + c);
  if (d.delta) v -= load(x, rp * d.channels + c);
  return v;
}

// One element of the input gradient at flat index `index` over (rows, pixels, C);
// dy has d.out_channels() channels.
template <typename P>
TIN_HD inline float input_grad_element(P dy, const float* offsets,
                                       const float* weights, const Dims& d,
                                       long long index) {
  const int cy = d.out_channels();
  const int c = static_cast<int>(index % d.channels);
  const long long rp = index / d.channels;
  if (c >= d.interlaced) return d.delta ? 0.0f : load(dy, rp * cy + c);
  const long long p = rp % d.pixels;
  const long long row = rp / d.pixels;
  const long long n = row / d.frames;
  const int s = static_cast<int>(row % d.frames);
  const Taps tp = adjoint_taps(offsets, weights, d.frames, n, s, c / d.group_size);
  const long long base = n * d.frames;
  float v = tp.c0 * load(dy, ((base + tp.f0) * d.pixels + p) * cy + c) +
            tp.c1 * load(dy, ((base + tp.f1) * d.pixels + p) * cy + c);
  if (d.delta) v -= load(dy, rp * cy + c);
  return v;
}

// Per-element terms of the offset and weight gradients for output row (n, t) and
// interlaced channel c at one pixel:
//   d/dw[n,t,g] += dy * ((1 - a) X[t-k] + a X[t-k-1])
//   d/db[n,g]   += w[n,t,g] * dy * (X[t-k-1] - X[t-k])   (through a only)
// Zero-filled taps contribute nothing, which matches the spec's Xz.
template <typename P>
TIN_HD inline void param_grad_terms(P x, P dy, const float* offsets,
                                    const float* weights, const Dims& d, long long n, int t,
                                    long long p, int c, float* dw_term, float* db_term) {
  const int g = c / d.group_size;
  int k;
  float a;
  split_offset(offsets[n * kGroups + g], &k, &a);
  const long long base = n * d.frames;
  const float gy = load(dy, ((base + t) * d.pixels + p) * d.out_channels() + c);
  const int f0 = t - k, f1 = t - k - 1;
  const float x0 = (f0 >= 0 && f0 < d.frames)
                       ? load(x, ((base + f0) * d.pixels + p) * d.channels + c) : 0.0f;
  const float x1 = (f1 >= 0 && f1 < d.frames)
                       ? load(x, ((base + f1) * d.pixels + p) * d.channels + c) : 0.0f;
  *dw_term = gy * ((1.0f - a) * x0 + a * x1);  // NaN for a non-finite offset (a = NaN)
  const float w = weights[(base + t) * kGroups + g];
  *db_term = w * gy * (x1 - x0) + poison(w);  // NaN for a non-finite weight
}

}  // namespace tin

#endif  // KERAS_TIN_OPS_KERNELS_TIN_INTERLACE_H_
