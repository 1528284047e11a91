// TensorFlow ops TinInterlace and TinInterlaceGrad: the fused interlace of TIN_SPEC.md
// and its gradient w.r.t. the input, the offsets and the weights. The per-frame taps
// come from tin_interlace.h (shared with the CUDA kernel); the CPU loops here read
// only the F interlaced channels and, in delta mode, write only those.
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU  // ctx->eigen_gpu_device() for the CUDA stream
#endif

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#include "tin_interlace.h"

#if GOOGLE_CUDA
#include "tin_interlace_gpu.h"
#endif

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

Status InterlaceShape(InferenceContext* c) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  bool delta;
  int shift_div;
  TF_RETURN_IF_ERROR(c->GetAttr("delta", &delta));
  TF_RETURN_IF_ERROR(c->GetAttr("shift_div", &shift_div));
  if (!delta) {
    c->set_output(0, x);
    return OkStatus();
  }
  DimensionHandle f;
  TF_RETURN_IF_ERROR(c->Divide(c->Dim(x, 3), shift_div, /*evenly_divisible=*/true, &f));
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->ReplaceDim(x, 3, f, &out));
  c->set_output(0, out);
  return OkStatus();
}

}  // namespace

REGISTER_OP("TinInterlace")
    .Input("x: T")
    .Input("offsets: float")
    .Input("weights: float")
    .Output("y: T")
    .Attr("T: {float, half, bfloat16}")
    .Attr("frames: int >= 1")
    .Attr("shift_div: int >= 1 = 4")
    .Attr("delta: bool = false")
    .SetShapeFn(InterlaceShape)
    .Doc(R"doc(
TIN interlace of x (N*T, H, W, C): the first C/shift_div channels in 4 groups are
shifted along time by the fractional per-clip offsets (N, 4), zero filled, and scaled
by the per-frame weights (N, T, 4). delta=false: full output (pass-through copied);
delta=true: only the interlaced channels, minus x's.
)doc");

REGISTER_OP("TinInterlaceGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("offsets: float")
    .Input("weights: float")
    .Output("dx: T")
    .Output("doffsets: float")
    .Output("dweights: float")
    .Attr("T: {float, half, bfloat16}")
    .Attr("frames: int >= 1")
    .Attr("shift_div: int >= 1 = 4")
    .Attr("delta: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(1));
      c->set_output(1, c->input(2));
      c->set_output(2, c->input(3));
      return OkStatus();
    });

namespace {

// Checks shapes and fills the dimensions shared by forward and gradient kernels;
// on a bad shape it fails ctx (callers check ctx->status()).
void ReadDims(OpKernelContext* ctx, const Tensor& x, const Tensor& offsets,
              const Tensor& weights, int frames, int shift_div, bool delta, tin::Dims* d) {
  OP_REQUIRES(ctx, x.dims() == 4,
              errors::InvalidArgument("x must be (N*T, H, W, C), got shape ",
                                      x.shape().DebugString()));
  const int64_t rows = x.dim_size(0);
  const int64_t channels = x.dim_size(3);
  OP_REQUIRES(ctx, rows % frames == 0,
              errors::InvalidArgument("x's first dimension ", rows,
                                      " is not a multiple of frames=", frames));
  OP_REQUIRES(ctx, channels % shift_div == 0 && (channels / shift_div) % tin::kGroups == 0,
              errors::InvalidArgument("channels=", channels, " must be divisible by 4 * shift_div=",
                                      4 * shift_div));
  const int64_t clips = rows / frames;
  OP_REQUIRES(ctx, offsets.dims() == 2 && offsets.dim_size(0) == clips &&
                       offsets.dim_size(1) == tin::kGroups,
              errors::InvalidArgument("offsets must be (", clips, ", 4), got ",
                                      offsets.shape().DebugString()));
  OP_REQUIRES(ctx, weights.dims() == 3 && weights.dim_size(0) == clips &&
                       weights.dim_size(1) == frames && weights.dim_size(2) == tin::kGroups,
              errors::InvalidArgument("weights must be (", clips, ", ", frames, ", 4), got ",
                                      weights.shape().DebugString()));
  d->rows = rows;
  d->pixels = x.dim_size(1) * x.dim_size(2);
  d->channels = static_cast<int>(channels);
  d->frames = frames;
  d->interlaced = static_cast<int>(channels / shift_div);
  d->group_size = d->interlaced / tin::kGroups;
  d->delta = delta;
}

// Work is split over (clip, chunk of pixels). A unit first copies its chunk's F
// interlaced channels of all T frames into a float buffer (each element read from memory
// once, converted once), then computes every output frame from that buffer. Reading the
// taps straight from x is several times slower: the T frames of one pixel lie a multiple
// of a large power of two apart (H*W*C*4 bytes at ResNet shapes), so they fall into the
// same cache sets and evict each other. The buffer's frame stride is padded for that
// reason, and the chunk is sized to stay in L2.
constexpr int64_t kChunkElements = 16384;
constexpr int64_t kFramePad = 16;  // floats: one cache line between frame planes

struct Chunking {
  int64_t pixels_per_chunk;
  int64_t chunks_per_clip;
  int64_t frame_stride;  // floats between frames in the buffer
};

inline Chunking MakeChunking(const tin::Dims& d) {
  Chunking c;
  c.pixels_per_chunk = std::max<int64_t>(
      1, std::min<int64_t>(d.pixels, kChunkElements / (int64_t{d.frames} * d.interlaced)));
  c.chunks_per_clip = (d.pixels + c.pixels_per_chunk - 1) / c.pixels_per_chunk;
  c.frame_stride = c.pixels_per_chunk * d.interlaced + kFramePad;
  return c;
}

// buf[f][p - p0][0:F] = float(src[(n*T + f) rows, pixel p, channels 0:F]).
template <typename T>
void LoadChunk(const T* src, int64_t channels, const tin::Dims& d, const Chunking& ch,
               int64_t n, int64_t p0, int64_t p1, float* buf) {
  const int f_ch = d.interlaced;
  for (int f = 0; f < d.frames; ++f) {
    const T* plane = src + (n * d.frames + f) * d.pixels * channels;
    float* out = buf + f * ch.frame_stride;
    for (int64_t p = p0; p < p1; ++p) {
      const T* in = plane + p * channels;
      float* o = out + (p - p0) * f_ch;
      for (int i = 0; i < f_ch; ++i) o[i] = static_cast<float>(in[i]);
    }
  }
}

template <typename T>
void ForwardCpu(OpKernelContext* ctx, const tin::Dims& d, const T* x, const float* offsets,
                const float* weights, T* y) {
  const int cout = d.out_channels();
  const int gs = d.group_size;
  const int F = d.interlaced;
  const int64_t C = d.channels;
  const float self = d.delta ? 1.0f : 0.0f;  // delta subtracts x itself
  const Chunking ch = MakeChunking(d);
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> buf(d.frames * ch.frame_stride);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / ch.chunks_per_clip;
      const int64_t p0 = (unit - n * ch.chunks_per_clip) * ch.pixels_per_chunk;
      const int64_t p1 = std::min<int64_t>(d.pixels, p0 + ch.pixels_per_chunk);
      LoadChunk(x, C, d, ch, n, p0, p1, buf.data());
      for (int t = 0; t < d.frames; ++t) {
        const int64_t row = n * d.frames + t;
        const float* src0[tin::kGroups];
        const float* src1[tin::kGroups];
        float c0[tin::kGroups], c1[tin::kGroups];
        for (int g = 0; g < tin::kGroups; ++g) {
          const tin::Taps tp = tin::forward_taps(offsets, weights, d.frames, n, t, g);
          src0[g] = buf.data() + tp.f0 * ch.frame_stride + g * gs;
          src1[g] = buf.data() + tp.f1 * ch.frame_stride + g * gs;
          c0[g] = tp.c0;
          c1[g] = tp.c1;
        }
        const float* own = buf.data() + t * ch.frame_stride;
        const T* xrow = x + row * d.pixels * C;
        T* yrow = y + row * d.pixels * cout;
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t q = (p - p0) * F;
          T* __restrict__ yp = yrow + p * cout;
          for (int g = 0; g < tin::kGroups; ++g) {
            const float* __restrict__ a = src0[g] + q;
            const float* __restrict__ b = src1[g] + q;
            const float* __restrict__ s = own + q + g * gs;
            T* __restrict__ o = yp + g * gs;
            const float k0 = c0[g], k1 = c1[g];
            for (int i = 0; i < gs; ++i) o[i] = static_cast<T>(k0 * a[i] + k1 * b[i] - self * s[i]);
          }
          if (!d.delta) {
            std::memcpy(yp + F, xrow + p * C + F, sizeof(T) * (C - F));
          }
        }
      }
    }
  };
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  const int64_t units = d.clips() * ch.chunks_per_clip;
  Shard(pool->num_threads, pool->workers, units,
        /*cost_per_unit=*/std::max<int64_t>(
            1, ch.pixels_per_chunk * d.frames * (4 * d.interlaced + cout)),
        work);
}

// Per (clip, chunk): buffer the chunk's x and dy (interlaced channels), then for each
// frame t the input gradient of frame s = t (adjoint taps into dy) and the offset /
// weight gradient terms of output frame t (taps into x).
template <typename T>
void GradCpu(OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x,
             const float* offsets, const float* weights, T* dx, float* doffsets,
             float* dweights) {
  const int cy = d.out_channels();
  const int gs = d.group_size;
  const int F = d.interlaced;
  const int64_t C = d.channels;
  const int64_t clips = d.clips();
  const float self = d.delta ? 1.0f : 0.0f;
  const Chunking ch = MakeChunking(d);
  // Double accumulators: a sum over H*W*F/4 products per (n, t, g).
  std::vector<double> dw_sum(d.rows * tin::kGroups, 0.0);
  std::vector<double> db_sum(d.rows * tin::kGroups, 0.0);  // before the clip sum over t
  std::mutex mu;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> xbuf(d.frames * ch.frame_stride), gbuf(d.frames * ch.frame_stride);
    std::vector<double> s0(d.frames * tin::kGroups), s1(d.frames * tin::kGroups);
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / ch.chunks_per_clip;
      const int64_t p0 = (unit - n * ch.chunks_per_clip) * ch.pixels_per_chunk;
      const int64_t p1 = std::min<int64_t>(d.pixels, p0 + ch.pixels_per_chunk);
      LoadChunk(x, C, d, ch, n, p0, p1, xbuf.data());
      LoadChunk(dy, cy, d, ch, n, p0, p1, gbuf.data());
      std::fill(s0.begin(), s0.end(), 0.0);
      std::fill(s1.begin(), s1.end(), 0.0);
      for (int t = 0; t < d.frames; ++t) {
        const int64_t row = n * d.frames + t;
        const float* g0[tin::kGroups];
        const float* g1[tin::kGroups];
        const float* x0[tin::kGroups];
        const float* x1[tin::kGroups];
        float ac0[tin::kGroups], ac1[tin::kGroups];
        for (int g = 0; g < tin::kGroups; ++g) {
          const tin::Taps at = tin::adjoint_taps(offsets, weights, d.frames, n, t, g);
          g0[g] = gbuf.data() + at.f0 * ch.frame_stride + g * gs;
          g1[g] = gbuf.data() + at.f1 * ch.frame_stride + g * gs;
          ac0[g] = at.c0;
          ac1[g] = at.c1;
          // Unweighted taps into x; zero-filled ones are masked when summing below.
          int k;
          float a;
          tin::split_offset(offsets[n * tin::kGroups + g], &k, &a);
          const int f0 = std::min(std::max(t - k, 0), d.frames - 1);
          const int f1 = std::min(std::max(t - k - 1, 0), d.frames - 1);
          x0[g] = xbuf.data() + f0 * ch.frame_stride + g * gs;
          x1[g] = xbuf.data() + f1 * ch.frame_stride + g * gs;
        }
        const float* gown = gbuf.data() + t * ch.frame_stride;
        const T* gyrow = dy + row * d.pixels * cy;
        T* dxrow = dx + row * d.pixels * C;
        double* st0 = s0.data() + t * tin::kGroups;
        double* st1 = s1.data() + t * tin::kGroups;
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t q = (p - p0) * F;
          T* __restrict__ dxp = dxrow + p * C;
          for (int g = 0; g < tin::kGroups; ++g) {
            const float* __restrict__ ga = g0[g] + q;
            const float* __restrict__ gb = g1[g] + q;
            const float* __restrict__ gg = gown + q + g * gs;
            T* __restrict__ o = dxp + g * gs;
            const float k0 = ac0[g], k1 = ac1[g];
            for (int i = 0; i < gs; ++i)
              o[i] = static_cast<T>(k0 * ga[i] + k1 * gb[i] - self * gg[i]);
            const float* __restrict__ xa = x0[g] + q;
            const float* __restrict__ xb = x1[g] + q;
            float p00 = 0.0f, p01 = 0.0f;  // dy . x0, dy . x1 over this pixel's group
            for (int i = 0; i < gs; ++i) {
              p00 += gg[i] * xa[i];
              p01 += gg[i] * xb[i];
            }
            st0[g] += p00;
            st1[g] += p01;
          }
          if (C > F) {
            T* rest = dxp + F;
            if (d.delta) {
              std::fill(rest, rest + (C - F), static_cast<T>(0.0f));
            } else {
              std::memcpy(rest, gyrow + p * cy + F, sizeof(T) * (C - F));
            }
          }
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      for (int t = 0; t < d.frames; ++t) {
        for (int g = 0; g < tin::kGroups; ++g) {
          int k;
          float a;
          tin::split_offset(offsets[n * tin::kGroups + g], &k, &a);
          const bool in0 = t - k >= 0 && t - k < d.frames;
          const bool in1 = t - k - 1 >= 0 && t - k - 1 < d.frames;
          const double v0 = in0 ? s0[t * tin::kGroups + g] : 0.0;
          const double v1 = in1 ? s1[t * tin::kGroups + g] : 0.0;
          const int64_t i = (n * d.frames + t) * tin::kGroups + g;
          dw_sum[i] += (1.0 - a) * v0 + a * v1;  // NaN for a non-finite offset (a = NaN)
          db_sum[i] += v1 - v0;
        }
      }
    }
  };
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  const int64_t units = clips * ch.chunks_per_clip;
  Shard(pool->num_threads, pool->workers, units,
        /*cost_per_unit=*/std::max<int64_t>(
            1, ch.pixels_per_chunk * d.frames * (8 * d.interlaced + d.channels)),
        work);
  for (int64_t n = 0; n < clips; ++n) {
    for (int g = 0; g < tin::kGroups; ++g) {
      double acc = 0.0;
      for (int t = 0; t < d.frames; ++t) {
        const int64_t i = (n * d.frames + t) * tin::kGroups + g;
        dweights[i] = static_cast<float>(dw_sum[i]);
        // + poison: NaN for a non-finite weight even where db_sum is 0 (tin_interlace.h).
        acc += static_cast<double>(weights[i]) * db_sum[i] + tin::poison(weights[i]);
      }
      doffsets[n * tin::kGroups + g] = static_cast<float>(acc);
    }
  }
}

template <typename Device, typename T>
class TinInterlaceOp : public OpKernel {
 public:
  explicit TinInterlaceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("frames", &frames_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shift_div", &shift_div_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("delta", &delta_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& offsets = ctx->input(1);
    const Tensor& weights = ctx->input(2);
    tin::Dims d;
    ReadDims(ctx, x, offsets, weights, frames_, shift_div_, delta_, &d);
    if (!ctx->status().ok()) return;
    TensorShape out_shape = x.shape();
    out_shape.set_dim(3, d.out_channels());
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &y));
    if (y->NumElements() == 0) return;
    Run(ctx, d, x.flat<T>().data(), offsets.flat<float>().data(),
        weights.flat<float>().data(), y->flat<T>().data());
  }

 private:
  void Run(OpKernelContext* ctx, const tin::Dims& d, const T* x, const float* offsets,
           const float* weights, T* y);
  int frames_;
  int shift_div_;
  bool delta_;
};

template <typename Device, typename T>
class TinInterlaceGradOp : public OpKernel {
 public:
  explicit TinInterlaceGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("frames", &frames_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shift_div", &shift_div_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("delta", &delta_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const Tensor& x = ctx->input(1);
    const Tensor& offsets = ctx->input(2);
    const Tensor& weights = ctx->input(3);
    tin::Dims d;
    ReadDims(ctx, x, offsets, weights, frames_, shift_div_, delta_, &d);
    if (!ctx->status().ok()) return;
    TensorShape dy_shape = x.shape();
    dy_shape.set_dim(3, d.out_channels());
    OP_REQUIRES(ctx, dy.shape() == dy_shape,
                errors::InvalidArgument("dy must have shape ", dy_shape.DebugString(),
                                        ", got ", dy.shape().DebugString()));
    Tensor *dx = nullptr, *doffsets = nullptr, *dweights = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, offsets.shape(), &doffsets));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, weights.shape(), &dweights));
    Run(ctx, d, dy.flat<T>().data(), x.flat<T>().data(), offsets.flat<float>().data(),
        weights.flat<float>().data(), dx->flat<T>().data(), doffsets->flat<float>().data(),
        dweights->flat<float>().data());
  }

 private:
  void Run(OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x,
           const float* offsets, const float* weights, T* dx, float* doffsets,
           float* dweights);
  int frames_;
  int shift_div_;
  bool delta_;
};

using CPUDevice = Eigen::ThreadPoolDevice;

template <typename T>
struct CpuRun {
  static void Forward(OpKernelContext* ctx, const tin::Dims& d, const T* x, const float* o,
                      const float* w, T* y) {
    if (d.rows * d.pixels == 0) return;
    ForwardCpu<T>(ctx, d, x, o, w, y);
  }
  static void Grad(OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x,
                   const float* o, const float* w, T* dx, float* dof, float* dwe) {
    if (d.rows * d.pixels == 0) {
      std::fill(dof, dof + d.clips() * tin::kGroups, 0.0f);
      std::fill(dwe, dwe + d.rows * tin::kGroups, 0.0f);
      return;
    }
    GradCpu<T>(ctx, d, dy, x, o, w, dx, dof, dwe);
  }
};

#define TIN_CPU_RUN(T)                                                                  \
  template <>                                                                           \
  void TinInterlaceOp<CPUDevice, T>::Run(OpKernelContext* ctx, const tin::Dims& d,      \
                                         const T* x, const float* o, const float* w,    \
                                         T* y) {                                        \
    CpuRun<T>::Forward(ctx, d, x, o, w, y);                                             \
  }                                                                                     \
  template <>                                                                           \
  void TinInterlaceGradOp<CPUDevice, T>::Run(                                           \
      OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x, const float* o, \
      const float* w, T* dx, float* dof, float* dwe) {                                  \
    CpuRun<T>::Grad(ctx, d, dy, x, o, w, dx, dof, dwe);                                 \
  }                                                                                     \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("TinInterlace").Device(DEVICE_CPU).TypeConstraint<T>("T"),                   \
      TinInterlaceOp<CPUDevice, T>);                                                    \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("TinInterlaceGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),               \
      TinInterlaceGradOp<CPUDevice, T>);

TIN_CPU_RUN(float)
TIN_CPU_RUN(Eigen::half)
TIN_CPU_RUN(bfloat16)
#undef TIN_CPU_RUN

#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;

// Eigen::half / bfloat16 are bit-compatible with CUDA's __half / __nv_bfloat16; the
// launchers in tin_interlace_op_gpu.cu.cc take the tag types of tin_interlace_gpu.h.
template <typename T>
struct GpuType;
template <>
struct GpuType<float> { using type = float; };
template <>
struct GpuType<Eigen::half> { using type = tin::gpu::Half; };
template <>
struct GpuType<bfloat16> { using type = tin::gpu::BFloat16; };

#define TIN_GPU_RUN(T)                                                                  \
  template <>                                                                           \
  void TinInterlaceOp<GPUDevice, T>::Run(OpKernelContext* ctx, const tin::Dims& d,      \
                                         const T* x, const float* o, const float* w,    \
                                         T* y) {                                        \
    using G = GpuType<T>::type;                                                         \
    auto stream = ctx->eigen_gpu_device().stream();                                     \
    OP_REQUIRES(ctx, tin::gpu::Forward<G>(stream, d, reinterpret_cast<const G*>(x), o, w, \
                                          reinterpret_cast<G*>(y)),                     \
                errors::Internal("TinInterlace CUDA launch failed"));                   \
  }                                                                                     \
  template <>                                                                           \
  void TinInterlaceGradOp<GPUDevice, T>::Run(                                           \
      OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x, const float* o, \
      const float* w, T* dx, float* dof, float* dwe) {                                  \
    using G = GpuType<T>::type;                                                         \
    auto stream = ctx->eigen_gpu_device().stream();                                     \
    OP_REQUIRES(ctx, tin::gpu::Grad<G>(stream, d, reinterpret_cast<const G*>(dy),       \
                                       reinterpret_cast<const G*>(x), o, w,             \
                                       reinterpret_cast<G*>(dx), dof, dwe),             \
                errors::Internal("TinInterlaceGrad CUDA launch failed"));               \
  }                                                                                     \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("TinInterlace").Device(DEVICE_GPU).TypeConstraint<T>("T"),                   \
      TinInterlaceOp<GPUDevice, T>);                                                    \
  REGISTER_KERNEL_BUILDER(                                                              \
      Name("TinInterlaceGrad").Device(DEVICE_GPU).TypeConstraint<T>("T"),               \
      TinInterlaceGradOp<GPUDevice, T>);

TIN_GPU_RUN(float)
TIN_GPU_RUN(Eigen::half)
TIN_GPU_RUN(bfloat16)
#undef TIN_GPU_RUN
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace tensorflow
