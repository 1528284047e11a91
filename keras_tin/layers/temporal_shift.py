"""TemporalShift: the TSM module (Lin et al., ICCV 2019), the paper's baseline."""

import keras

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int
from keras_tin.ops import portable


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalShift(keras.layers.Layer):
    """Shifts channels [0, C/shift_div) from frame t+1 and the next C/shift_div from t-1.

    Zero-filled at the clip borders; no parameters. Input and output:
    (batch * frames, height, width, channels).
    """

    def __init__(self, frames, shift_div=8, **kwargs):
        super().__init__(**kwargs)
        frames = positive_int(frames, "frames")
        shift_div = positive_int(shift_div, "shift_div", minimum=2,
                                 requirement="an integer >= 2")
        self.frames = frames
        self.shift_div = shift_div

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] < self.shift_div:
            raise ValueError(
                f"TemporalShift needs at least shift_div={self.shift_div} channels. "
                f"Received: channels={input_shape[-1]}")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        return portable.temporal_shift(inputs, self.frames, self.shift_div)

    def delta(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        return portable.temporal_shift_delta(inputs, self.frames, self.shift_div)

    def changed_channels(self, channels):
        return 2 * (channels // self.shift_div)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, shift_div=self.shift_div)
        return config
