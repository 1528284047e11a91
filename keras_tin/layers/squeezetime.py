"""Layers of SqueezeTime (Zhai et al., "No Time to Waste: Squeeze Time into Channel for
Mobile Video Understanding", arXiv 2405.08344; xinghaochen/SqueezeTime).

SqueezeTime is a 2D network on whole clips: the T frames of a clip are stacked along the
channels (colour-major, channel c*T + t, as PyTorch's `x.view(N, -1, H, W)` of an
(N, 3, T, H, W) clip) and every layer after that runs once per clip, not once per frame.

    TimeIntoChannels      folded frames (B*T, H, W, C) -> clips (B, H, W, C*T)
    PositionEmbedding2D   x + a learned (P, P, C) map, resized bilinearly with
                          align_corners=True when the feature map is not P x P
                          (the IOI branch of the Channel-Time Learning block)
    ChannelTimeGate       x * g, g of x's shape or (B, 1, 1, C) broadcast over space
                          (the temporal-importance scaling and the IOI gate)
"""

import numpy as np

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import positive_int


@keras.saving.register_keras_serializable(package="keras_tin")
class TimeIntoChannels(keras.layers.Layer):
    """(batch * frames, H, W, C) -> (batch, H, W, C * frames), channel c * frames + t.

    The frames of a clip are consecutive rows of the input (clip-major, as FoldFrames
    writes them). Models holding this layer compute once per clip after it, so
    keras_tin.utils.flops counts them once per clip (`folds_time_into_channels`).
    """

    folds_time_into_channels = True

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")

    def call(self, x):
        shape = ops.shape(x)
        h, w, c = shape[1], shape[2], x.shape[-1]
        x = ops.reshape(x, (-1, self.frames, h, w, c))
        x = ops.transpose(x, (0, 2, 3, 4, 1))  # (B, H, W, C, T): colour-major channels
        return ops.reshape(x, (-1, h, w, c * self.frames))

    def compute_output_shape(self, input_shape):
        batch = None if input_shape[0] is None else input_shape[0] // self.frames
        return (batch, input_shape[1], input_shape[2], input_shape[3] * self.frames)

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}


def align_corners_matrix(size, source):
    """(size, source) matrix of 1-D linear interpolation with align_corners=True:
    output i samples the input at i * (source - 1) / (size - 1) (PyTorch's
    F.interpolate(..., mode="bilinear", align_corners=True); index 0 when size is 1).
    The coordinates are computed in float32 as PyTorch's CPU kernel computes them
    (scale, then scale * i, then the fraction), so the weights are PyTorch's to the bit."""
    size, source = int(size), int(source)
    matrix = np.zeros((size, source), np.float32)
    scale = np.float32((source - 1) / (size - 1)) if size > 1 else np.float32(0.0)
    for i in range(size):
        position = np.float32(scale * np.float32(i))
        low = min(int(np.floor(position)), source - 1)
        high = min(low + 1, source - 1)
        frac = np.float32(min(max(position - np.float32(low), 0.0), 1.0))
        matrix[i, low] += np.float32(1.0) - frac
        matrix[i, high] += frac
    return matrix


@keras.saving.register_keras_serializable(package="keras_tin")
class PositionEmbedding2D(keras.layers.Layer):
    """x + E, E a learned (pos_dim, pos_dim, C) map ("pos_embed").

    On a feature map of another size (H, W), E is resized to it first, bilinearly with
    align_corners=True (as SqueezeTime's IOI module, which F.interpolates its
    position embedding only when the size differs), computed as E' = A_H E A_W^T with
    constant interpolation matrices. H and W must be static.

    Initialised as the publisher: kaiming_normal_(mode="fan_out", relu) on the PyTorch
    (1, C, P, P) tensor, i.e. a normal with std sqrt(2 / P^2).
    """

    def __init__(self, pos_dim, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.pos_dim = positive_int(pos_dim, "pos_dim")
        self.seed = seed

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None:
            raise ValueError(f"PositionEmbedding2D '{self.name}' needs a static height and "
                             f"width (the embedding is resized to them once). Received: "
                             f"input_shape={tuple(input_shape)}; build the model with a fixed "
                             f"input_shape.")
        p = self.pos_dim
        self.pos_embed = self.add_weight(
            shape=(p, p, input_shape[-1]), name="pos_embed",
            initializer=keras.initializers.RandomNormal(stddev=float(np.sqrt(2.0) / p),
                                                        seed=self.seed))
        self._size = (int(h), int(w))

    @property
    def resized(self):
        """Whether the embedding is interpolated (the feature map is not pos_dim square)."""
        return self._size != (self.pos_dim, self.pos_dim)

    def embedding(self):
        """The (H, W, C) map added to the input."""
        e = ops.cast(self.pos_embed, self.compute_dtype)
        if not self.resized:
            return e
        a_h = ops.convert_to_tensor(align_corners_matrix(self._size[0], self.pos_dim),
                                    self.compute_dtype)
        a_w = ops.convert_to_tensor(align_corners_matrix(self._size[1], self.pos_dim),
                                    self.compute_dtype)
        e = ops.einsum("hp,pqc->hqc", a_h, e)
        return ops.einsum("wq,hqc->hwc", a_w, e)

    def call(self, x):
        return x + self.embedding()[None]

    def get_config(self):
        return {**super().get_config(), "pos_dim": self.pos_dim, "seed": self.seed}


@keras.saving.register_keras_serializable(package="keras_tin")
class ChannelTimeGate(keras.layers.Layer):
    """[x, g] -> x * g: g has x's shape, or (batch, 1, 1, C) broadcast over space.

    One multiply per output element, counted by keras_tin.utils.flops
    (`macs_per_frame`): SqueezeTime's temporal-importance scaling alpha * x and its IOI
    gate x_short * sigmoid(...).
    """

    def call(self, inputs):
        x, gate = inputs
        return x * gate

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def macs_per_frame(self):
        shape = self.output.shape
        return int(shape[1] * shape[2] * shape[3])
