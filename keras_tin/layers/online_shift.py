"""OnlineTemporalShift: the uni-directional (causal) shift of online TSM.

Online TSM (Lin et al., ICCV 2019, section 4.3; MIT's online_demo/mobilenet_v2_tsm.py,
InvertedResidualWithShift.forward) replaces the first C/shift_div channels of frame t by
those of frame t-1 (zeros for the first frame) and keeps every other channel of frame t.
No channel comes from the future, so a clip can be processed one frame at a time by caching
the first C/shift_div channels of the previous frame (keras_tin.streaming).
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int


def online_shift(x, frames, shift_div=8):
    """(N*T, H, W, C) -> same shape; channels [0, C/shift_div) from frame t-1, zero at t=0."""
    shape = ops.shape(x)
    h, w, c = shape[1], shape[2], shape[3]
    fold = c // shift_div
    x5 = ops.reshape(x, (-1, frames, h, w, c))
    past = ops.concatenate([ops.zeros_like(x5[:, :1, :, :, :fold]), x5[:, :-1, :, :, :fold]],
                           axis=1)
    return ops.reshape(ops.concatenate([past, x5[..., fold:]], axis=-1), (-1, h, w, c))


def online_shift_delta(x, frames, shift_div=8):
    """online_shift(x) - x on the first C/shift_div channels (the only ones it changes)."""
    shape = ops.shape(x)
    h, w, c = shape[1], shape[2], shape[3]
    fold = c // shift_div
    x5 = ops.reshape(x[..., :fold], (-1, frames, h, w, fold))
    past = ops.concatenate([ops.zeros_like(x5[:, :1]), x5[:, :-1]], axis=1)
    return ops.reshape(past - x5, (-1, h, w, fold))


@keras.saving.register_keras_serializable(package="keras_tin")
class OnlineTemporalShift(keras.layers.Layer):
    """Causal TSM shift: channels [0, C/shift_div) from frame t-1 (zero-filled at t=0),
    the rest from frame t. No parameters. Input and output: (batch * frames, H, W, C).

    The step form (keras_tin.streaming) caches x[..., :C // shift_div] of each frame and
    feeds it to the next one: running it over a clip gives exactly this layer's output.
    """

    def __init__(self, frames, shift_div=8, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        self.shift_div = positive_int(shift_div, "shift_div", minimum=2,
                                      requirement="an integer >= 2")

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] < self.shift_div:
            raise ValueError(
                f"OnlineTemporalShift needs at least shift_div={self.shift_div} channels. "
                f"Received: channels={input_shape[-1]}")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        return online_shift(inputs, self.frames, self.shift_div)

    def delta(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        return online_shift_delta(inputs, self.frames, self.shift_div)

    def changed_channels(self, channels):
        return channels // self.shift_div

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, shift_div=self.shift_div)
        return config
