// TensorFlow op TinChannelMean: the TIN descriptor, the mean over H and W of the first
// `channels` channels of an NHWC tensor, accumulated in float32.
//
// The portable path slices x[..., :F] first, which TensorFlow materialises (a strided
// copy of a quarter of the block input) before reducing it; this op reads those
// channels in place once and writes only (N*T, F) floats. Its gradient (a broadcast)
// is registered in Python (keras_tin/ops/custom_op.py).
#define EIGEN_USE_THREADS

#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace {

using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

Status ChannelMeanShape(InferenceContext* c) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  int channels;
  TF_RETURN_IF_ERROR(c->GetAttr("channels", &channels));
  c->set_output(0, c->Matrix(c->Dim(x, 0), channels));
  return OkStatus();
}

template <typename T>
class TinChannelMeanOp : public OpKernel {
 public:
  explicit TinChannelMeanOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("channels", &channels_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    OP_REQUIRES(ctx, x.dims() == 4,
                errors::InvalidArgument("TinChannelMean expects NHWC input of rank 4, got ",
                                        x.shape().DebugString()));
    const int64_t rows = x.dim_size(0);
    const int64_t pixels = x.dim_size(1) * x.dim_size(2);
    const int64_t c = x.dim_size(3);
    const int64_t f = channels_;
    OP_REQUIRES(ctx, f <= c,
                errors::InvalidArgument("TinChannelMean: channels=", f,
                                        " exceeds the input's ", c, " channels"));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows, f}), &y));
    if (y->NumElements() == 0) return;
    const T* in = x.flat<T>().data();
    float* out = y->flat<float>().data();
    const float scale = pixels > 0 ? 1.0f / static_cast<float>(pixels) : 0.0f;
    // One unit: a row (a frame) and a run of pixels; partial sums meet in `partial`.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(pixels, 4096));
    const int64_t chunks = (pixels + chunk - 1) / chunk;
    std::vector<float> partial(rows * chunks * f, 0.0f);
    auto work = [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t r = u / chunks, k = u % chunks;
        float* acc = partial.data() + u * f;
        const int64_t p_end = std::min(pixels, (k + 1) * chunk);
        for (int64_t p = k * chunk; p < p_end; ++p) {
          const T* px = in + (r * pixels + p) * c;
          for (int64_t j = 0; j < f; ++j) acc[j] += static_cast<float>(px[j]);
        }
      }
    };
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    Shard(pool->NumThreads(), pool, rows * chunks, chunk * f, work);
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = out + r * f;
      for (int64_t j = 0; j < f; ++j) dst[j] = 0.0f;
      for (int64_t k = 0; k < chunks; ++k) {
        const float* src = partial.data() + (r * chunks + k) * f;
        for (int64_t j = 0; j < f; ++j) dst[j] += src[j];
      }
      for (int64_t j = 0; j < f; ++j) dst[j] *= scale;
    }
  }

 private:
  int channels_;
};

}  // namespace

REGISTER_OP("TinChannelMean")
    .Input("x: T")
    .Output("mean: float")
    .Attr("T: {float, half, bfloat16}")
    .Attr("channels: int >= 1")
    .SetShapeFn(ChannelMeanShape)
    .Doc("Mean over H and W of x[..., :channels], float32: (N, H, W, C) -> (N, channels).");

#define TIN_REGISTER_MEAN(T)                                                        \
  REGISTER_KERNEL_BUILDER(                                                          \
      Name("TinChannelMean").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
      TinChannelMeanOp<T>);
TIN_REGISTER_MEAN(float)
TIN_REGISTER_MEAN(Eigen::half)
TIN_REGISTER_MEAN(bfloat16)
#undef TIN_REGISTER_MEAN

}  // namespace tensorflow
