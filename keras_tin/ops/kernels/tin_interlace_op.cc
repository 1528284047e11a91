// TensorFlow ops TinInterlace and TinInterlaceGrad: the fused interlace of TIN_SPEC.md
// and its gradient w.r.t. the input, the offsets and the weights. The per-frame taps
// come from tin_interlace.h (shared with the CUDA kernel); the CPU loops here read
// only the F interlaced channels and, in delta mode, write only those.
#define EIGEN_USE_THREADS

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

template <typename T>
void ForwardCpu(OpKernelContext* ctx, const tin::Dims& d, const T* x, const float* offsets,
                const float* weights, T* y) {
  const int cout = d.out_channels();
  const int gs = d.group_size;
  auto work = [&](int64_t begin, int64_t end) {
    for (int64_t rp = begin; rp < end; ++rp) {  // rp = row * pixels + pixel
      const int64_t row = rp / d.pixels;
      const int64_t p = rp % d.pixels;
      const int64_t n = row / d.frames;
      const int t = static_cast<int>(row % d.frames);
      const T* xt = x + rp * d.channels;
      T* yt = y + rp * cout;
      for (int g = 0; g < tin::kGroups; ++g) {
        const tin::Taps tp = tin::forward_taps(offsets, weights, d.frames, n, t, g);
        const int64_t c0 = static_cast<int64_t>(g) * gs;
        const T* x0 = x + ((n * d.frames + tp.f0) * d.pixels + p) * d.channels + c0;
        const T* x1 = x + ((n * d.frames + tp.f1) * d.pixels + p) * d.channels + c0;
        const float self = d.delta ? 1.0f : 0.0f;  // delta subtracts x itself
        for (int i = 0; i < gs; ++i) {
          const float v = tp.c0 * static_cast<float>(x0[i]) + tp.c1 * static_cast<float>(x1[i]) -
                          self * static_cast<float>(xt[c0 + i]);
          yt[c0 + i] = static_cast<T>(v);
        }
      }
      if (!d.delta) {
        std::memcpy(yt + d.interlaced, xt + d.interlaced,
                    sizeof(T) * (d.channels - d.interlaced));
      }
    }
  };
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(pool->num_threads, pool->workers, d.rows * d.pixels,
        /*cost_per_unit=*/std::max<int64_t>(1, 4 * d.interlaced + cout), work);
}

// One pass over (row, pixel): the input gradient of row s (adjoint taps into dy) and
// the offset/weight gradient terms of output row t = s (forward taps into x).
template <typename T>
void GradCpu(OpKernelContext* ctx, const tin::Dims& d, const T* dy, const T* x,
             const float* offsets, const float* weights, T* dx, float* doffsets,
             float* dweights) {
  const int cy = d.out_channels();
  const int gs = d.group_size;
  const int64_t clips = d.clips();
  // Double accumulators: a sum over H*W*F/4 products per (n, t, g).
  std::vector<double> dw_sum(d.rows * tin::kGroups, 0.0);
  std::vector<double> db_sum(d.rows * tin::kGroups, 0.0);  // before the clip sum over t
  std::mutex mu;
  auto work = [&](int64_t begin, int64_t end) {
    const int64_t first_row = begin / d.pixels;
    const int64_t last_row = (end - 1) / d.pixels;
    std::vector<double> local_dw((last_row - first_row + 1) * tin::kGroups, 0.0);
    std::vector<double> local_db((last_row - first_row + 1) * tin::kGroups, 0.0);
    for (int64_t rp = begin; rp < end; ++rp) {
      const int64_t row = rp / d.pixels;
      const int64_t p = rp % d.pixels;
      const int64_t n = row / d.frames;
      const int t = static_cast<int>(row % d.frames);
      const T* gyt = dy + rp * cy;
      T* dxt = dx + rp * d.channels;
      for (int g = 0; g < tin::kGroups; ++g) {
        const int64_t c0 = static_cast<int64_t>(g) * gs;
        // Input gradient of frame s = t.
        const tin::Taps at = tin::adjoint_taps(offsets, weights, d.frames, n, t, g);
        const T* g0 = dy + ((n * d.frames + at.f0) * d.pixels + p) * cy + c0;
        const T* g1 = dy + ((n * d.frames + at.f1) * d.pixels + p) * cy + c0;
        const float self = d.delta ? 1.0f : 0.0f;
        for (int i = 0; i < gs; ++i) {
          const float v = at.c0 * static_cast<float>(g0[i]) + at.c1 * static_cast<float>(g1[i]) -
                          self * static_cast<float>(gyt[c0 + i]);
          dxt[c0 + i] = static_cast<T>(v);
        }
        // Parameter terms of output frame t: unweighted taps (weight 1) give the
        // interpolated value and the difference X[t-k-1] - X[t-k].
        int k;
        float a;
        tin::split_offset(offsets[n * tin::kGroups + g], &k, &a);
        const bool in0 = t - k >= 0 && t - k < d.frames;
        const bool in1 = t - k - 1 >= 0 && t - k - 1 < d.frames;
        const T* x0 = x + ((n * d.frames + (in0 ? t - k : t)) * d.pixels + p) * d.channels + c0;
        const T* x1 = x + ((n * d.frames + (in1 ? t - k - 1 : t)) * d.pixels + p) * d.channels + c0;
        const float m0 = in0 ? 1.0f : 0.0f, m1 = in1 ? 1.0f : 0.0f;
        float s00 = 0.0f, s01 = 0.0f;  // sum dy * x0, sum dy * x1
        for (int i = 0; i < gs; ++i) {
          const float gv = static_cast<float>(gyt[c0 + i]);
          s00 += gv * static_cast<float>(x0[i]);
          s01 += gv * static_cast<float>(x1[i]);
        }
        s00 *= m0;
        s01 *= m1;
        const int64_t slot = (row - first_row) * tin::kGroups + g;
        local_dw[slot] += (1.0f - a) * s00 + a * s01;
        local_db[slot] += s01 - s00;
      }
      if (d.channels > d.interlaced) {
        T* rest = dxt + d.interlaced;
        if (d.delta) {
          std::fill(rest, rest + (d.channels - d.interlaced), static_cast<T>(0.0f));
        } else {
          std::memcpy(rest, gyt + d.interlaced, sizeof(T) * (d.channels - d.interlaced));
        }
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < local_dw.size(); ++i) {
      dw_sum[first_row * tin::kGroups + i] += local_dw[i];
      db_sum[first_row * tin::kGroups + i] += local_db[i];
    }
  };
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(pool->num_threads, pool->workers, d.rows * d.pixels,
        /*cost_per_unit=*/std::max<int64_t>(1, 8 * d.interlaced + d.channels), work);
  for (int64_t n = 0; n < clips; ++n) {
    for (int g = 0; g < tin::kGroups; ++g) {
      double acc = 0.0;
      for (int t = 0; t < d.frames; ++t) {
        const int64_t i = (n * d.frames + t) * tin::kGroups + g;
        dweights[i] = static_cast<float>(dw_sum[i]);
        acc += static_cast<double>(weights[i]) * db_sum[i];
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
