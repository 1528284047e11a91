"""NonLocalAttention: the pairwise part of a non-local block (Wang et al., CVPR 2018).

The block itself is built from standard layers by the temporal ResNet builder (1x1 convs
theta / phi / g, spatial 2x2 max pooling of phi and g, this layer, a 1x1 conv and a
BatchNormalization added to the input), as OpenMMLab's NonLocal3d inside mmaction2's
NL3DWrapper computes it for the non-local TSM checkpoints.
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int

MODES = ("embedded_gaussian", "dot_product", "gaussian")


def check_mode(mode, argument="mode"):
    if mode not in MODES:
        raise ValueError(f"{argument} must be one of {MODES}. Received: {argument}={mode!r}")


@keras.saving.register_keras_serializable(package="keras_tin")
class NonLocalAttention(keras.layers.Layer):
    """Attention of every position of a clip to every (sub-sampled) position of the clip.

    Inputs [theta, phi, g], all folded (batch * frames, h, w, channels):
    theta (B*T, H, W, Ck) gives the queries, phi (B*T, h, w, Ck) the keys and
    g (B*T, h, w, Cv) the values; phi and g share their spatial size (usually the 2x2
    max-pooled theta grid). Positions run over the frames and the space of one clip, so
    each query sees T*h*w keys. Output: (B*T, H, W, Cv).

    Pairwise weights f(q, k) from the dot products q . k:
    - "embedded_gaussian" and "gaussian": softmax over the keys (the two modes differ in
      what theta and phi are: learned embeddings or the features themselves; the
      dot products are not scaled, as in the published non-local TSM configs);
    - "dot_product": q . k divided by the number of keys T*h*w.

    Args:
        frames: frames per clip T.
        mode: "embedded_gaussian", "dot_product" or "gaussian".
    """

    def __init__(self, frames, mode="embedded_gaussian", **kwargs):
        super().__init__(**kwargs)
        check_mode(mode)
        self.frames = positive_int(frames, "frames")
        self.mode = mode

    def _check(self, shapes):
        if not isinstance(shapes, (list, tuple)) or len(shapes) != 3:
            raise ValueError(f"NonLocalAttention '{self.name}' takes [theta, phi, g]. "
                             f"Received: {shapes!r}")
        theta, phi, g = (tuple(s) for s in shapes)
        for shape in (theta, phi, g):
            check_folded_input(self, shape, self.frames)
        if theta[-1] is not None and phi[-1] is not None and theta[-1] != phi[-1]:
            raise ValueError(f"NonLocalAttention '{self.name}': theta and phi need the same "
                             f"channels. Received: theta {theta}, phi {phi}")
        if any(a is not None and b is not None and a != b for a, b in zip(phi[1:3], g[1:3])):
            raise ValueError(f"NonLocalAttention '{self.name}': phi and g need the same "
                             f"spatial size. Received: phi {phi}, g {g}")

    def build(self, input_shape):
        self._check(input_shape)

    def call(self, inputs):
        theta, phi, g = inputs
        self._check([x.shape for x in inputs])
        t = self.frames
        q_shape, k_shape = ops.shape(theta), ops.shape(phi)
        queries = t * q_shape[1] * q_shape[2]
        keys = t * k_shape[1] * k_shape[2]
        # Clip-major rows: (B*T, H, W, C) -> (B, T*H*W, C), positions in (t, y, x) order.
        q = ops.reshape(theta, (-1, queries, q_shape[3]))
        k = ops.reshape(phi, (-1, keys, k_shape[3]))
        v = ops.reshape(g, (-1, keys, ops.shape(g)[3]))
        pairwise = ops.matmul(q, ops.transpose(k, (0, 2, 1)))  # (B, THW, Thw)
        if self.mode == "dot_product":
            pairwise = pairwise / ops.cast(keys, pairwise.dtype)
        else:
            dtype = keras.backend.standardize_dtype(pairwise.dtype)
            if dtype in ("float16", "bfloat16"):
                pairwise = ops.cast(pairwise, "float32")  # exp and normalise in float32
            pairwise = ops.cast(ops.softmax(pairwise, axis=-1), dtype)
        y = ops.matmul(pairwise, v)  # (B, THW, Cv)
        return ops.reshape(y, (-1, q_shape[1], q_shape[2], ops.shape(g)[3]))

    def compute_output_shape(self, input_shape):
        theta, _, g = input_shape
        return tuple(theta[:3]) + (g[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, mode=self.mode)
        return config
