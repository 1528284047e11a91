"""TCP: Temporal-attentive Covariance Pooling (Gao, Wang, Zhang, Hu, Li, "Temporal-attentive
Covariance Pooling Networks for Video Recognition", NeurIPS 2021; official code
ZilinGao/Temporal-attentive-Covariance-Pooling-Networks-for-Video-Recognition, ops/TCP and
ops/MPNCOV). See /work/shared/ZOO_SPEC.md section 11.

TCP replaces the global average pool and the frame consensus at the end of a 2D network.
On the last stage's folded frames x (batch*T, H, W, 2048):

    1. reduction: 1x1 conv 2048 -> 256 + BN + ReLU, 1x1 conv 256 -> d = 128 + BN + ReLU;
    2. temporal attention on x (batch*T, H, W, d):
       TSA  x1[t] = x[t-1], x2[t] = x1[t-1] (frame 0 repeated), phi_1, phi_2, phi_0 1x1
            convs d -> d with bias; A[a, b] = softmax_b(phi_1(x1)[a] . phi_2(x2)[b] / sqrt d)
            over the H*W positions of each frame; out = BN(A phi_0(x)) (BN gamma starts at
            0); x_att = x + out                              (TemporalSpatialAttention)
       TCA  z = spatial mean of x; d1 = z - z[t-1], d2 = (z - z[t-2]) / 2 with CIRCULAR
            frame indices; g(v) = sigmoid(W2 ReLU(W1 v + b1) + b2), W1: d -> 4d, W2: 4d -> d
            shared; x_att <- x_att * (g(d1) + g(d2)) / 2     (TemporalChannelAttention)
       temporal conv: kernel (T//2 + 1) over frames, d -> d, bias, circular padding,
            kernel initialised to 0; out = ReLU(conv(x_att) + x)  (CircularTemporalConv)
    3. covariance over the M = T*H*W positions of each clip:
            S = (1/M) X (I - 11'/M) X'                       (CovariancePooling)
    4. matrix square root by Newton-Schulz (iSQRT-COV), 3 iterations: a = trace(S),
       A = S / (a + 1e-5), iterate, multiply by sqrt(a)      (NewtonSchulzSqrt)
    5. the upper triangle with its diagonal, row-major: d(d+1)/2 = 8256 features
                                                             (UpperTriangle)
    then dropout and the classifier (Dense 8256 -> classes).

Every step is a matmul, a softmax, a sigmoid or a gather: standard ops (TFLite builtins),
differentiated by autodiff (the publisher's hand-written backward functions compute the
same gradients). The head is numerically sensitive (a covariance, a trace, a matrix
iteration), so its layers default to the "float32" dtype policy: under a mixed-precision
global policy the backbone runs in float16/bfloat16 and the head casts its input to
float32.

Layer names made by `build` (prefix "tcp"):
    tcp_reduce1 / tcp_reduce_bn1 / tcp_reduce2 / tcp_reduce_bn2   the reductions
    tcp_tsa (phi_1, phi_2, phi_0 kernels and biases), tcp_tsa_bn, tcp_tsa_add
    tcp_tca (g1, g2 kernels and biases)
    tcp_conv_1d (kernel (k, d, d), bias), tcp_conv_1d_add, tcp_att_relu
    tcp_cov, tcp_sqrtm, tcp_triu
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import positive_int

TCP_DIM = 128  # the publisher's TCP_dim
INNER_DIM = 256  # dim_inner of the first reduction
ITERATIONS = 3  # MPNCOV.SqrtmLayer(x, 3)
TRACE_EPSILON = 1e-5  # Sqrtm eps_ (added to the trace before dividing; not in the sqrt)
_BN_EPSILON = 1e-5
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1


def temporal_kernel_size(frames):
    """The temporal conv's kernel T//2 + 1 (5 for 8 frames, 9 for 16)."""
    return positive_int(frames, "frames") // 2 + 1


def check_frames(frames):
    """TCP needs an odd temporal kernel T//2 + 1 (circular padding (k-1)/2 on each side
    keeps T frames): frames 1, 4, 5, 8, 9, 12, 13, 16, ... Returns frames."""
    frames = positive_int(frames, "frames")
    if temporal_kernel_size(frames) % 2 == 0:
        raise ValueError(f"TCP's temporal conv has kernel frames//2 + 1, which must be odd to "
                         f"keep the frame count under circular padding: frames must be 4k or "
                         f"4k+1 (4, 5, 8, 9, 12, 16, ...; the published models use 8 and 16). "
                         f"Received: frames={frames}")
    return frames


def _float32(kwargs):
    kwargs.setdefault("dtype", "float32")
    return kwargs


def _normal(stddev=0.01):
    return keras.initializers.RandomNormal(stddev=stddev)


def _msra():
    """c2_msra_fill: He normal, fan_out (a new initializer per variable)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _clips(x, frames):
    """(batch*frames, H, W, C) -> (batch, frames, H*W, C)."""
    shape = ops.shape(x)
    return ops.reshape(x, (-1, frames, shape[1] * shape[2], shape[3]))


def _check_input(layer, shape):
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(f"{layer.name} takes folded frames (batch*frames, H, W, C) with a "
                         f"known C. Received: input shape {tuple(shape)}")


def _roll_frames(x, shift):
    """x[:, (t - shift) mod T] along axis 1 (PyTorch's roll by `shift` frames)."""
    frames = x.shape[1]
    shift = shift % frames
    if shift == 0:
        return x
    return ops.concatenate([x[:, frames - shift:], x[:, :frames - shift]], axis=1)


def _previous_frame(x):
    """x[:, max(t - 1, 0)]: the previous frame, frame 0 repeated (TSA's x_1)."""
    if x.shape[1] == 1:
        return x
    return ops.concatenate([x[:, :1], x[:, :-1]], axis=1)


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalSpatialAttention(keras.layers.Layer):
    """TSA without its BN: A(phi_1(x1), phi_2(x2)) @ phi_0(x), x1 / x2 the previous / second
    previous frame (frame 0 repeated).

    Variables phi_1_kernel, phi_2_kernel, phi_0_kernel (d, d) = the PyTorch 1x1 conv weights
    (d, d, 1, 1) squeezed and transposed, and their biases. The attention is over the H*W
    positions of a frame: A[a, b] = softmax_b(q[a] . k[b] * d^-0.5), out[a] = sum_b A[a, b]
    v[b]. Input and output: folded frames (batch*frames, H, W, d).
    """

    def __init__(self, frames, **kwargs):
        super().__init__(**_float32(kwargs))
        self.frames = positive_int(frames, "frames")

    def build(self, input_shape):
        _check_input(self, input_shape)
        d = input_shape[-1]
        for name in ("phi_1", "phi_2", "phi_0"):
            setattr(self, name + "_kernel",
                    self.add_weight((d, d), initializer=_msra(), name=name + "_kernel"))
            setattr(self, name + "_bias",
                    self.add_weight((d,), initializer="zeros", name=name + "_bias"))

    def call(self, inputs):
        x = _clips(inputs, self.frames)  # (B, T, P, d)
        x1 = _previous_frame(x)
        x2 = _previous_frame(x1)
        d = inputs.shape[-1]

        def embed(v, name):
            return ops.matmul(v, getattr(self, name + "_kernel")) + getattr(self, name + "_bias")

        positions = ops.shape(x)[2]
        q = ops.reshape(embed(x1, "phi_1"), (-1, positions, d))  # (B*T, P, d)
        k = ops.reshape(embed(x2, "phi_2"), (-1, positions, d))
        v = ops.reshape(embed(x, "phi_0"), (-1, positions, d))
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * (float(d) ** -0.5)
        out = ops.matmul(ops.softmax(scores, axis=-1), v)  # (B*T, P, d)
        return ops.reshape(out, ops.shape(inputs))

    def macs_per_frame(self):
        h, w, d = self.input.shape[1:]
        p = h * w
        return 3 * p * d * d + 2 * p * p * d

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalChannelAttention(keras.layers.Layer):
    """TCA: inputs [x, x_att] (folded frames); returns x_att * (g(d1) + g(d2)) / 2 with
    z the spatial mean of x, d1 = z - z[t-1], d2 = (z - z[t-2]) / 2 (circular over frames),
    g(v) = sigmoid(g2(ReLU(g1(v)))) (the PyTorch 1x1 convs g1: d -> 4d, g2: 4d -> d, with
    bias; kernels stored as (in, out))."""

    def __init__(self, frames, **kwargs):
        super().__init__(**_float32(kwargs))
        self.frames = positive_int(frames, "frames")

    def build(self, input_shape):
        shape = input_shape[0]
        _check_input(self, shape)
        d = shape[-1]
        self.g1_kernel = self.add_weight((d, 4 * d), initializer=_normal(), name="g1_kernel")
        self.g1_bias = self.add_weight((4 * d,), initializer="zeros", name="g1_bias")
        self.g2_kernel = self.add_weight((4 * d, d), initializer=_normal(), name="g2_kernel")
        self.g2_bias = self.add_weight((d,), initializer="zeros", name="g2_bias")

    def _gate(self, v):
        h = ops.relu(ops.matmul(v, self.g1_kernel) + self.g1_bias)
        return ops.sigmoid(ops.matmul(h, self.g2_kernel) + self.g2_bias)

    def call(self, inputs):
        x, x_att = inputs
        d = x.shape[-1]
        z = ops.reshape(ops.mean(x, axis=(1, 2)), (-1, self.frames, d))  # (B, T, d)
        d1 = z - _roll_frames(z, 1)
        d2 = (z - _roll_frames(z, 2)) * 0.5
        scale = (self._gate(d1) + self._gate(d2)) * 0.5
        return x_att * ops.reshape(scale, (-1, 1, 1, d))

    def macs_per_frame(self):
        d = self.input[0].shape[-1]
        return 2 * 2 * d * 4 * d  # two differences through g1 and g2

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class CircularTemporalConv(keras.layers.Layer):
    """A full (d -> filters) convolution over frames with circular padding (k-1)/2 on each
    side (PyTorch Conv3d kernel (k, 1, 1), padding_mode='circular'):
    out[t] = sum_j x[(t + j - (k-1)/2) mod T] @ kernel[j] + bias.

    kernel (k, d, filters) = the PyTorch weight (filters, d, k, 1, 1) squeezed and
    transposed (2, 1, 0). The kernel starts at zero (TCP's conv_1d), the bias at zero.
    Input and output: folded frames (batch*frames, H, W, C).
    """

    def __init__(self, frames, kernel_size=None, filters=None,
                 kernel_initializer="zeros", **kwargs):
        super().__init__(**_float32(kwargs))
        self.frames = positive_int(frames, "frames")
        self.kernel_size = positive_int(
            temporal_kernel_size(frames) if kernel_size is None else kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0 or self.kernel_size // 2 > self.frames:
            raise ValueError(f"kernel_size must be odd and at most 2*frames+1 (circular "
                             f"padding (k-1)/2 per side). Received: kernel_size="
                             f"{self.kernel_size}, frames={self.frames}")
        self.filters = None if filters is None else positive_int(filters, "filters")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        _check_input(self, input_shape)
        d = input_shape[-1]
        filters = self.filters or d
        self.kernel = self.add_weight((self.kernel_size, d, filters),
                                      initializer=self.kernel_initializer, name="kernel")
        self.bias = self.add_weight((filters,), initializer="zeros", name="bias")

    def call(self, inputs):
        x = _clips(inputs, self.frames)  # (B, T, P, d)
        p = (self.kernel_size - 1) // 2
        if p:
            x = ops.concatenate([x[:, self.frames - p:], x, x[:, :p]], axis=1)
        y = ops.conv(x, ops.expand_dims(self.kernel, 1), strides=1, padding="valid")
        y = y + self.bias
        shape = ops.shape(inputs)
        return ops.reshape(y, (shape[0], shape[1], shape[2], y.shape[-1]))

    def macs_per_frame(self):
        h, w, d = self.input.shape[1:]
        return h * w * self.kernel_size * d * (self.filters or d)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, kernel_size=self.kernel_size, filters=self.filters,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class CovariancePooling(keras.layers.Layer):
    """Covariance of each clip's features over its M = T*H*W positions:
    (batch*frames, H, W, d) -> (batch, d, d), S = (1/M) sum_m (x_m - mean)(x_m - mean)'
    (= MPNCOV Covpool's (1/M) X (I - 11'/M) X'). frames=1 gives a per-image covariance."""

    def __init__(self, frames, **kwargs):
        super().__init__(**_float32(kwargs))
        self.frames = positive_int(frames, "frames")

    def build(self, input_shape):
        _check_input(self, input_shape)

    def call(self, inputs):
        d = inputs.shape[-1]
        shape = ops.shape(inputs)
        m = self.frames * shape[1] * shape[2]
        x = ops.reshape(inputs, (-1, m, d))  # (B, M, d): frames, then rows, then columns
        x = x - ops.mean(x, axis=1, keepdims=True)
        return ops.matmul(ops.transpose(x, (0, 2, 1)), x) / ops.cast(m, x.dtype)

    def macs_per_frame(self):
        h, w, d = self.input.shape[1:]
        return h * w * d * d

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.frames
        return (b, input_shape[-1], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


def newton_schulz_sqrt(s, iterations=ITERATIONS, epsilon=TRACE_EPSILON):
    """iSQRT (MPNCOV Sqrtm forward) on a batch of SPD matrices s (B, d, d): pre-normalise by
    the trace a (A = s / (a + eps)), `iterations` coupled Newton-Schulz steps, post-compensate
    by sqrt(a). Keras ops, any backend."""
    d = s.shape[-1]
    eye = ops.eye(d, dtype=s.dtype)
    i3 = 3.0 * eye
    trace = ops.sum(s * eye, axis=(1, 2))  # (B,)
    a = s / (trace[:, None, None] + epsilon)
    zy = 0.5 * (i3 - a)
    if iterations < 2:
        y = ops.matmul(a, zy)
    else:
        y, z = ops.matmul(a, zy), zy
        for _ in range(iterations - 2):
            zy = 0.5 * (i3 - ops.matmul(z, y))
            y, z = ops.matmul(y, zy), ops.matmul(zy, z)
        y = 0.5 * ops.matmul(y, i3 - ops.matmul(z, y))
    return y * ops.sqrt(trace)[:, None, None]


@keras.saving.register_keras_serializable(package="keras_tin")
class NewtonSchulzSqrt(keras.layers.Layer):
    """Approximate matrix square root of SPD matrices (batch, d, d) by `iterations` coupled
    Newton-Schulz iterations with trace pre-normalisation and sqrt(trace)
    post-compensation (iSQRT-COV; MPNCOV.SqrtmLayer(x, 3) in TCP)."""

    def __init__(self, iterations=ITERATIONS, epsilon=TRACE_EPSILON, **kwargs):
        super().__init__(**_float32(kwargs))
        self.iterations = positive_int(iterations, "iterations")
        self.epsilon = float(epsilon)

    def call(self, inputs):
        return newton_schulz_sqrt(inputs, self.iterations, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(iterations=self.iterations, epsilon=self.epsilon)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class UpperTriangle(keras.layers.Layer):
    """(batch, d, d) -> (batch, d(d+1)/2): entries (i, j) with i <= j in row-major order
    (MPNCOV Triuvec), one gather."""

    def __init__(self, **kwargs):
        super().__init__(**_float32(kwargs))

    def build(self, input_shape):
        d = input_shape[-1]
        if len(input_shape) != 3 or d is None or input_shape[1] != d:
            raise ValueError(f"{self.name} takes square matrices (batch, d, d). Received: "
                             f"input shape {tuple(input_shape)}")
        self.dim = d
        self.indices = [i * d + j for i in range(d) for j in range(i, d)]

    def call(self, inputs):
        flat = ops.reshape(inputs, (-1, self.dim * self.dim))
        return ops.take(flat, ops.convert_to_tensor(self.indices, dtype="int32"), axis=1)

    def compute_output_shape(self, input_shape):
        d = input_shape[-1]
        return (input_shape[0], d * (d + 1) // 2)


def _bn(name, **kwargs):
    return keras.layers.BatchNormalization(axis=-1, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON,
                                           name=name, dtype="float32", **kwargs)


def tcp_head(frames, dim=TCP_DIM, inner_dim=INNER_DIM, iterations=ITERATIONS, prefix="tcp"):
    """The TCP head as a callable: folded frames (batch*frames, H, W, C) -> (batch,
    dim(dim+1)/2) clip features, every layer in float32. Layer names start with `prefix`
    (see the module docstring)."""
    frames = check_frames(frames)
    dim = positive_int(dim, "dim")
    inner_dim = positive_int(inner_dim, "inner_dim")

    def conv1x1(filters, name):
        return keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}_{name}",
                                   kernel_initializer=keras.initializers.VarianceScaling(
                                       2.0, "fan_out", "untruncated_normal"),
                                   dtype="float32")

    def apply(x):
        x = conv1x1(inner_dim, "reduce1")(x)
        x = keras.layers.ReLU(dtype="float32")(_bn(f"{prefix}_reduce_bn1")(x))
        x = conv1x1(dim, "reduce2")(x)
        x = keras.layers.ReLU(dtype="float32")(_bn(f"{prefix}_reduce_bn2")(x))
        tsa_bn = _bn(f"{prefix}_tsa_bn", gamma_initializer="zeros")  # TSA starts at x
        att = TemporalSpatialAttention(frames, name=f"{prefix}_tsa")(x)
        att = keras.layers.Add(name=f"{prefix}_tsa_add", dtype="float32")([x, tsa_bn(att)])
        att = TemporalChannelAttention(frames, name=f"{prefix}_tca")([x, att])
        att = CircularTemporalConv(frames, name=f"{prefix}_conv_1d")(att)
        x = keras.layers.Add(name=f"{prefix}_conv_1d_add", dtype="float32")([att, x])
        x = keras.layers.ReLU(name=f"{prefix}_att_relu", dtype="float32")(x)
        x = CovariancePooling(frames, name=f"{prefix}_cov")(x)
        x = NewtonSchulzSqrt(iterations, name=f"{prefix}_sqrtm")(x)
        return UpperTriangle(name=f"{prefix}_triu")(x)

    return apply


def build(site):
    """ModuleSpec build for the "head" placement (temporal kind "tcp", pooling="tcp")."""
    return tcp_head(site.frames)


LAYER_TYPES = (TemporalSpatialAttention, TemporalChannelAttention, CircularTemporalConv,
               CovariancePooling, NewtonSchulzSqrt, UpperTriangle)
