"""3-D pools of the factorised video ResNets as TFLite builtins.

TFLite has no builtin MaxPool3D or AvgPool3D (the converter wants Flex ops). A max over a (t, h, w)
window is the max over t of the max over (h, w), and the windows and strides of the three
axes are independent, so `SeparableMaxPooling3D` computes the same values with MAX_POOL_2D
on frames folded into the batch, then (t = temporal stride) a reshape and REDUCE_MAX,
all TFLite builtins with int8 kernels. Used by the P3D ResNets (keras_tin/applications/
video3d/p3d.py: MaxPool3d((2, 3, 3), 2) and MaxPool3d((2, 1, 1), (2, 1, 1))).
`WindowedGlobalAveragePooling3D` is pytorchvideo's ResNet head pooling (AvgPool3d with
stride 1, then the mean over its output positions) as one weighted sum (MUL, SUM).
"""

import keras
import numpy as np
from keras import ops


def _triple(value, name):
    try:
        out = tuple(int(v) for v in value)
    except TypeError:
        out = (int(value),) * 3 if isinstance(value, int) and not isinstance(value, bool) else ()
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"{name} must be a positive integer or three of them (t, h, w). "
                         f"Received: {name}={value!r}")
    return out


@keras.saving.register_keras_serializable(package="keras_tin")
class SeparableMaxPooling3D(keras.layers.Layer):
    """Max-pooling of (batch, frames, H, W, C) with "valid" padding, as
    keras.layers.MaxPooling3D(pool_size, strides) (PyTorch's MaxPool3d without padding,
    floor mode). The temporal window must equal the temporal stride (or be 1): the case of
    every pool in the P3D ResNets; pad beforehand (ZeroPadding3D) for padded pools."""

    def __init__(self, pool_size, strides=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _triple(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _triple(strides, "strides")
        if self.pool_size[0] not in (1, self.strides[0]):
            raise ValueError(f"SeparableMaxPooling3D needs a temporal window of 1 or equal to "
                             f"the temporal stride. Received: pool_size={self.pool_size}, "
                             f"strides={self.strides}")

    def call(self, x):
        shape = ops.shape(x)
        b, t, c = shape[0], shape[1], x.shape[-1]
        kt, kh, kw = self.pool_size
        st, sh, sw = self.strides
        if (kh, kw, sh, sw) != (1, 1, 1, 1):
            y = ops.reshape(x, (-1, shape[2], shape[3], c))
            y = ops.max_pool(y, (kh, kw), (sh, sw), padding="valid")
            ys = ops.shape(y)
            x = ops.reshape(y, (b, t, ys[1], ys[2], c))
        if kt > 1 or st > 1:
            shape = ops.shape(x)
            out_t = (x.shape[1] - kt) // st + 1 if x.shape[1] is not None else (t - kt) // st + 1
            x = x[:, :out_t * st]
            if kt == 1:
                x = x[:, ::st]
            else:
                x = ops.reshape(x, (b, out_t, st, shape[2], shape[3], c))
                x = ops.max(x, axis=2)
        return x

    def compute_output_shape(self, input_shape):
        out = [input_shape[0]]
        for size, k, s in zip(input_shape[1:4], self.pool_size, self.strides):
            out.append(None if size is None else (size - k) // s + 1)
        return tuple(out) + (input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides)
        return config


def window_weights(size, kernel):
    """Per-index weight along one axis of the mean over all stride-1 windows of `kernel`
    of the windows' means: (windows covering the index) / (windows * kernel)."""
    positions = size - kernel + 1
    index = np.arange(size)
    covering = np.minimum(index, positions - 1) - np.maximum(0, index - kernel + 1) + 1
    return covering / (positions * kernel)


@keras.saving.register_keras_serializable(package="keras_tin")
class WindowedGlobalAveragePooling3D(keras.layers.Layer):
    """(batch, t, h, w, C) -> (batch, C): the mean over the output positions of a stride-1,
    "valid" average pool of `pool_size` (cut to the input where it is larger), i.e.
    pytorchvideo's ResNetBasicHead pooling (AvgPool3d(pool, stride=1), then
    AdaptiveAvgPool3d(1)); a global average when the pool covers the input. Needs static
    t, h, w."""

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _triple(pool_size, "pool_size")

    def build(self, input_shape):
        sizes = tuple(input_shape[1:4])
        if any(s is None for s in sizes):
            raise ValueError(f"{self.name} needs a static (frames, height, width); received "
                             f"input shape {tuple(input_shape)}.")
        axes = [window_weights(s, min(k, s)) for s, k in zip(sizes, self.pool_size)]
        weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
        self._weights_3d = weights[..., None].astype("float32")  # (t, h, w, 1), sums to 1

    def call(self, x):
        weights = ops.cast(ops.convert_to_tensor(self._weights_3d), x.dtype)
        return ops.sum(x * weights, axis=(1, 2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size)
        return config
