// TensorFlow ops KerasTinCorrelation and KerasTinCorrelationGrad: MotionSqueeze's local
// correlation (correlation.h states the sums) and its gradient w.r.t. both inputs.
// The CPU kernels split the B*H image rows over TensorFlow's thread pool (Shard); each
// row's sums run over contiguous channel vectors (vectorised: a 16-lane dot product
// forward, channel axpys backward), accumulated in float. Half and bfloat16 inputs are
// widened to float once per call. The gradient is registered in Python
// (keras_tin/ops/custom_op.py). CUDA kernels: correlation_op_gpu.cu.cc (GOOGLE_CUDA).
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <algorithm>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#include "correlation.h"

#if GOOGLE_CUDA
#include "correlation_gpu.h"
#endif

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

Status CorrelationShape(InferenceContext* c) {
  ShapeHandle f1, f2, merged;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &f1));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &f2));
  TF_RETURN_IF_ERROR(c->Merge(f1, f2, &merged));
  int max_disp;
  TF_RETURN_IF_ERROR(c->GetAttr("max_displacement", &max_disp));
  const int64_t patch = 2 * static_cast<int64_t>(max_disp) + 1;
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->ReplaceDim(merged, 3, c->MakeDim(patch * patch), &out));
  c->set_output(0, out);
  return OkStatus();
}

Status CorrelationGradShape(InferenceContext* c) {
  ShapeHandle f1, f2, merged;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &f1));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &f2));
  TF_RETURN_IF_ERROR(c->Merge(f1, f2, &merged));
  c->set_output(0, merged);
  c->set_output(1, merged);
  return OkStatus();
}

}  // namespace

REGISTER_OP("KerasTinCorrelation")
    .Input("f1: T")
    .Input("f2: T")
    .Output("y: T")
    .Attr("T: {float, half, bfloat16}")
    .Attr("max_displacement: int >= 0 = 7")
    .SetShapeFn(CorrelationShape)
    .Doc(R"doc(
Local correlation: y[b, h, w, (dy + d)(2d + 1) + dx + d] = sum_c f1[b, h, w, c] *
f2[b, h + dy, w + dx, c] for |dy|, |dx| <= d = max_displacement, zero outside the image.
f1, f2: (B, H, W, C). y: (B, H, W, (2d + 1)^2).
)doc");

REGISTER_OP("KerasTinCorrelationGrad")
    .Input("grad: T")
    .Input("f1: T")
    .Input("f2: T")
    .Output("df1: T")
    .Output("df2: T")
    .Attr("T: {float, half, bfloat16}")
    .Attr("max_displacement: int >= 0 = 7")
    .SetShapeFn(CorrelationGradShape)
    .Doc("Gradient of KerasTinCorrelation w.r.t. f1 and f2.");

namespace {

// Checks f1, f2 (and the upstream gradient's shape when `grad` is given) and fills d.
void ReadDims(OpKernelContext* ctx, const Tensor& f1, const Tensor& f2, int max_disp,
              kt_corr::Dims* d) {
  OP_REQUIRES(ctx, f1.dims() == 4,
              errors::InvalidArgument("KerasTinCorrelation expects f1 of rank 4 (B, H, W, C), "
                                      "got shape ", f1.shape().DebugString()));
  OP_REQUIRES(ctx, f1.shape() == f2.shape(),
              errors::InvalidArgument("KerasTinCorrelation expects f1 and f2 of the same "
                                      "shape, got ", f1.shape().DebugString(), " and ",
                                      f2.shape().DebugString()));
  OP_REQUIRES(ctx, f1.dim_size(1) < (1LL << 30) && f1.dim_size(2) < (1LL << 30) &&
                       f1.dim_size(3) < (1LL << 30),
              errors::InvalidArgument("KerasTinCorrelation: dimensions too large: ",
                                      f1.shape().DebugString()));
  d->batch = f1.dim_size(0);
  d->height = static_cast<int>(f1.dim_size(1));
  d->width = static_cast<int>(f1.dim_size(2));
  d->channels = static_cast<int>(f1.dim_size(3));
  d->max_disp = max_disp;
}

// Float views of the inputs: the data itself for float, a widened copy otherwise.
template <typename T>
struct FloatInput {
  const float* ptr = nullptr;
  std::vector<float> copy;
  FloatInput(OpKernelContext* ctx, const T* data, int64_t n) {
    if constexpr (std::is_same<T, float>::value) {
      ptr = data;
    } else {
      copy.resize(n);
      float* out = copy.data();
      auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
      Shard(pool->num_threads, pool->workers, n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) out[i] = static_cast<float>(data[i]);
      });
      ptr = copy.data();
    }
  }
};

constexpr int kLanes = 16;
// 16 floats (one AVX-512 register, two AVX ones): GCC/Clang vector extension, so that
// the dot products below keep their accumulators in registers.
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec LoadVec(const float* p) {
  Vec v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

inline float SumVec(const Vec& v) {
  float acc = 0.0f;
  for (int l = 0; l < kLanes; ++l) acc += v[l];
  return acc;
}

template <typename T>
inline void StoreRow(T* dst, const float* src, int n) {
  for (int i = 0; i < n; ++i) dst[i] = static_cast<T>(src[i]);
}

// acc[j][l] = sum_c a[c][l] * b[c][j + l] for j < N, l < 16: N horizontal shifts of
// 16 consecutive pixels, with a and b channel-major rows (strides sa, sb per channel).
template <int N>
inline void ShiftBlock(const float* a, int64_t sa, const float* b, int64_t sb, int C,
                       Vec* acc) {
  for (int j = 0; j < N; ++j) acc[j] = Vec{};
  for (int c = 0; c < C; ++c) {
    const Vec va = LoadVec(a + c * sa);
    const float* bc = b + c * sb;
    for (int j = 0; j < N; ++j) acc[j] += va * LoadVec(bc + j);
  }
}

// The forward pass vectorised over 16 pixels of an image row: f1 and f2 are first
// copied channel-major per image row (f1t: (B*H, C, Wq), f2t: (B*H, C, Wq + 2d) with
// d zero columns on the left, zeros past W), so that every horizontal shift is an
// unaligned vector load and the zero padding handles the image border; no horizontal
// reductions are needed.
template <typename T>
void ForwardCpu(OpKernelContext* ctx, const kt_corr::Dims& d, const T* f1_in, const T* f2_in,
                T* y) {
  const int C = d.channels, H = d.height, W = d.width, P = d.patch(), K2 = d.out_channels();
  const int md = d.max_disp;
  const int64_t rows = d.batch * H;
  const int64_t Wq = (W + kLanes - 1) / kLanes * kLanes;
  const int64_t W2 = Wq + 2 * md;
  std::vector<float> f1t(rows * C * Wq, 0.0f), f2t(rows * C * W2, 0.0f);
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(pool->num_threads, pool->workers, rows, static_cast<int64_t>(W) * C * 2,
        [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            float* t1 = f1t.data() + r * C * Wq;
            float* t2 = f2t.data() + r * C * W2 + md;
            const T* s1 = f1_in + r * W * C;
            const T* s2 = f2_in + r * W * C;
            for (int w = 0; w < W; ++w) {
              for (int c = 0; c < C; ++c) {
                t1[c * Wq + w] = static_cast<float>(s1[w * C + c]);
                t2[c * W2 + w] = static_cast<float>(s2[w * C + c]);
              }
            }
          }
        });
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> out(static_cast<int64_t>(W) * K2);
    Vec acc[8];
    for (int64_t bh = begin; bh < end; ++bh) {
      const int h = static_cast<int>(bh % H);
      const int64_t b0 = bh - h;
      std::fill(out.begin(), out.end(), 0.0f);
      const float* a = f1t.data() + bh * C * Wq;
      for (int ky = 0; ky < P; ++ky) {
        const int hh = h + ky - md;
        if (hh < 0 || hh >= H) continue;  // stays zero
        const float* t2 = f2t.data() + (b0 + hh) * C * W2;
        for (int64_t wb = 0; wb < Wq; wb += kLanes) {
          const int lanes = static_cast<int>(std::min<int64_t>(kLanes, W - wb));
          int kx = 0;
          auto flush = [&](int n) {
            for (int j = 0; j < n; ++j) {
              for (int l = 0; l < lanes; ++l) {
                out[(wb + l) * K2 + ky * P + kx + j] = acc[j][l];
              }
            }
            kx += n;
          };
          for (; kx + 8 <= P;) { ShiftBlock<8>(a + wb, Wq, t2 + wb + kx, W2, C, acc); flush(8); }
          for (; kx + 4 <= P;) { ShiftBlock<4>(a + wb, Wq, t2 + wb + kx, W2, C, acc); flush(4); }
          for (; kx + 2 <= P;) { ShiftBlock<2>(a + wb, Wq, t2 + wb + kx, W2, C, acc); flush(2); }
          for (; kx < P;) { ShiftBlock<1>(a + wb, Wq, t2 + wb + kx, W2, C, acc); flush(1); }
        }
      }
      StoreRow(y + bh * W * K2, out.data(), W * K2);
    }
  };
  Shard(pool->num_threads, pool->workers, rows, static_cast<int64_t>(W) * K2 * C, work);
}

// Channels [c0, c0 + NV * 16) of df1 and df2 at pixel (b, h, w), accumulators in
// registers. f1b, f2b, gb point at image b's first pixel.
template <int NV>
inline void GradChannels(const kt_corr::Dims& d, const float* f1b, const float* f2b,
                         const float* gb, int h, int w, int c0, float* df1, float* df2) {
  const int C = d.channels, H = d.height, W = d.width, P = d.patch(), K2 = d.out_channels();
  const int md = d.max_disp;
  Vec acc1[NV], acc2[NV];
  for (int j = 0; j < NV; ++j) acc1[j] = acc2[j] = Vec{};
  const float* gp = gb + (static_cast<int64_t>(h) * W + w) * K2;
  for (int ky = 0; ky < P; ++ky) {
    // df1: this pixel's outputs read f2 at (h + dy, w + dx).
    const int hh = h + ky - md;
    if (hh >= 0 && hh < H) {
      const int lo = std::max(0, md - w), hi = std::min(P, W + md - w);
      const float* src = f2b + (static_cast<int64_t>(hh) * W + w - md) * C + c0;
      for (int kx = lo; kx < hi; ++kx) {
        const float s = gp[ky * P + kx];
        const float* x = src + static_cast<int64_t>(kx) * C;
        for (int j = 0; j < NV; ++j) acc1[j] += s * LoadVec(x + j * kLanes);
      }
    }
    // df2: the outputs at (h - dy, w - dx) read f2 at this pixel.
    const int hs = h - (ky - md);
    if (hs >= 0 && hs < H) {
      const int lo = std::max(0, w + md - (W - 1)), hi = std::min(P, w + md + 1);
      for (int kx = lo; kx < hi; ++kx) {
        const int64_t q = static_cast<int64_t>(hs) * W + (w - (kx - md));
        const float s = gb[q * K2 + ky * P + kx];
        const float* x = f1b + q * C + c0;
        for (int j = 0; j < NV; ++j) acc2[j] += s * LoadVec(x + j * kLanes);
      }
    }
  }
  for (int j = 0; j < NV; ++j) {
    __builtin_memcpy(df1 + c0 + j * kLanes, &acc1[j], sizeof(Vec));
    __builtin_memcpy(df2 + c0 + j * kLanes, &acc2[j], sizeof(Vec));
  }
}

// The last C % 16 channels (scalar loops).
inline void GradTail(const kt_corr::Dims& d, const float* f1b, const float* f2b,
                     const float* gb, int h, int w, int c0, float* df1, float* df2) {
  const int C = d.channels, H = d.height, W = d.width, P = d.patch(), K2 = d.out_channels();
  const int md = d.max_disp;
  for (int c = c0; c < C; ++c) df1[c] = df2[c] = 0.0f;
  const float* gp = gb + (static_cast<int64_t>(h) * W + w) * K2;
  for (int ky = 0; ky < P; ++ky) {
    for (int kx = 0; kx < P; ++kx) {
      const int hh = h + ky - md, ww = w + kx - md;
      if (hh >= 0 && hh < H && ww >= 0 && ww < W) {
        const float s = gp[ky * P + kx];
        const float* x = f2b + (static_cast<int64_t>(hh) * W + ww) * C;
        for (int c = c0; c < C; ++c) df1[c] += s * x[c];
      }
      const int hs = h - (ky - md), ws = w - (kx - md);
      if (hs >= 0 && hs < H && ws >= 0 && ws < W) {
        const int64_t q = static_cast<int64_t>(hs) * W + ws;
        const float s = gb[q * K2 + ky * P + kx];
        const float* x = f1b + q * C;
        for (int c = c0; c < C; ++c) df2[c] += s * x[c];
      }
    }
  }
}

template <typename T>
void GradCpu(OpKernelContext* ctx, const kt_corr::Dims& d, const T* g_in, const T* f1_in,
             const T* f2_in, T* df1, T* df2) {
  const int64_t n = d.pixels() * d.channels;
  const int C = d.channels, H = d.height, W = d.width, K2 = d.out_channels();
  FloatInput<T> f1(ctx, f1_in, n), f2(ctx, f2_in, n);
  FloatInput<T> g(ctx, g_in, d.pixels() * K2);
  const int64_t image = static_cast<int64_t>(H) * W;
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<float> out1(C), out2(C);
    for (int64_t bh = begin; bh < end; ++bh) {
      const int h = static_cast<int>(bh % H);
      const int64_t b = bh / H;
      const float* f1b = f1.ptr + b * image * C;
      const float* f2b = f2.ptr + b * image * C;
      const float* gb = g.ptr + b * image * K2;
      for (int w = 0; w < W; ++w) {
        int c0 = 0;
        for (; c0 + 4 * kLanes <= C; c0 += 4 * kLanes)
          GradChannels<4>(d, f1b, f2b, gb, h, w, c0, out1.data(), out2.data());
        for (; c0 + kLanes <= C; c0 += kLanes)
          GradChannels<1>(d, f1b, f2b, gb, h, w, c0, out1.data(), out2.data());
        if (c0 < C) GradTail(d, f1b, f2b, gb, h, w, c0, out1.data(), out2.data());
        const int64_t p = bh * W + w;
        StoreRow(df1 + p * C, out1.data(), C);
        StoreRow(df2 + p * C, out2.data(), C);
      }
    }
  };
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(pool->num_threads, pool->workers, d.batch * H,
        2 * static_cast<int64_t>(W) * K2 * C, work);
}

using CPUDevice = Eigen::ThreadPoolDevice;

template <typename Device, typename T>
struct Runner;

template <typename T>
struct Runner<CPUDevice, T> {
  static void Forward(OpKernelContext* ctx, const kt_corr::Dims& d, const T* f1, const T* f2,
                      T* y) {
    ForwardCpu<T>(ctx, d, f1, f2, y);
  }
  static void Grad(OpKernelContext* ctx, const kt_corr::Dims& d, const T* g, const T* f1,
                   const T* f2, T* df1, T* df2) {
    GradCpu<T>(ctx, d, g, f1, f2, df1, df2);
  }
};

template <typename Device, typename T>
class CorrelationOp : public OpKernel {
 public:
  explicit CorrelationOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_displacement", &max_disp_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& f1 = ctx->input(0);
    const Tensor& f2 = ctx->input(1);
    kt_corr::Dims d;
    ReadDims(ctx, f1, f2, max_disp_, &d);
    if (!ctx->status().ok()) return;
    TensorShape out_shape = f1.shape();
    out_shape.set_dim(3, d.out_channels());
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &y));
    if (y->NumElements() == 0) return;
    Runner<Device, T>::Forward(ctx, d, f1.flat<T>().data(), f2.flat<T>().data(),
                               y->flat<T>().data());
  }

 private:
  int max_disp_;
};

template <typename Device, typename T>
class CorrelationGradOp : public OpKernel {
 public:
  explicit CorrelationGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_displacement", &max_disp_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& g = ctx->input(0);
    const Tensor& f1 = ctx->input(1);
    const Tensor& f2 = ctx->input(2);
    kt_corr::Dims d;
    ReadDims(ctx, f1, f2, max_disp_, &d);
    if (!ctx->status().ok()) return;
    TensorShape g_shape = f1.shape();
    g_shape.set_dim(3, d.out_channels());
    OP_REQUIRES(ctx, g.shape() == g_shape,
                errors::InvalidArgument("KerasTinCorrelationGrad: grad must have shape ",
                                        g_shape.DebugString(), ", got ",
                                        g.shape().DebugString()));
    Tensor *df1 = nullptr, *df2 = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, f1.shape(), &df1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, f2.shape(), &df2));
    if (df1->NumElements() == 0) return;
    Runner<Device, T>::Grad(ctx, d, g.flat<T>().data(), f1.flat<T>().data(),
                            f2.flat<T>().data(), df1->flat<T>().data(), df2->flat<T>().data());
  }

 private:
  int max_disp_;
};

#define KT_CORR_REGISTER_CPU(T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                           \
      Name("KerasTinCorrelation").Device(DEVICE_CPU).TypeConstraint<T>("T"),         \
      CorrelationOp<CPUDevice, T>);                                                  \
  REGISTER_KERNEL_BUILDER(                                                           \
      Name("KerasTinCorrelationGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),     \
      CorrelationGradOp<CPUDevice, T>);
KT_CORR_REGISTER_CPU(float)
KT_CORR_REGISTER_CPU(Eigen::half)
KT_CORR_REGISTER_CPU(bfloat16)
#undef KT_CORR_REGISTER_CPU

#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;

// Eigen::half / bfloat16 are bit-compatible with CUDA's __half / __nv_bfloat16.
template <typename T>
struct CorrGpuType;
template <>
struct CorrGpuType<float> { using type = float; };
template <>
struct CorrGpuType<Eigen::half> { using type = kt_corr::gpu::Half; };
template <>
struct CorrGpuType<bfloat16> { using type = kt_corr::gpu::BFloat16; };

template <typename T>
struct Runner<GPUDevice, T> {
  using G = typename CorrGpuType<T>::type;
  static void Forward(OpKernelContext* ctx, const kt_corr::Dims& d, const T* f1, const T* f2,
                      T* y) {
    auto stream = ctx->eigen_gpu_device().stream();
    OP_REQUIRES(ctx,
                kt_corr::gpu::Forward<G>(stream, d, reinterpret_cast<const G*>(f1),
                                         reinterpret_cast<const G*>(f2),
                                         reinterpret_cast<G*>(y)),
                errors::Internal("KerasTinCorrelation CUDA launch failed"));
  }
  static void Grad(OpKernelContext* ctx, const kt_corr::Dims& d, const T* g, const T* f1,
                   const T* f2, T* df1, T* df2) {
    auto stream = ctx->eigen_gpu_device().stream();
    OP_REQUIRES(ctx,
                kt_corr::gpu::Grad<G>(stream, d, reinterpret_cast<const G*>(g),
                                      reinterpret_cast<const G*>(f1),
                                      reinterpret_cast<const G*>(f2), reinterpret_cast<G*>(df1),
                                      reinterpret_cast<G*>(df2)),
                errors::Internal("KerasTinCorrelationGrad CUDA launch failed"));
  }
};

#define KT_CORR_REGISTER_GPU(T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                           \
      Name("KerasTinCorrelation").Device(DEVICE_GPU).TypeConstraint<T>("T"),         \
      CorrelationOp<GPUDevice, T>);                                                  \
  REGISTER_KERNEL_BUILDER(                                                           \
      Name("KerasTinCorrelationGrad").Device(DEVICE_GPU).TypeConstraint<T>("T"),     \
      CorrelationGradOp<GPUDevice, T>);
KT_CORR_REGISTER_GPU(float)
KT_CORR_REGISTER_GPU(Eigen::half)
KT_CORR_REGISTER_GPU(bfloat16)
#undef KT_CORR_REGISTER_GPU
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace tensorflow
