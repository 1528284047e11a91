"""TemporalDepthwiseConv1D: a channel-wise convolution over time, initialised as identity
or as a shift (TEA's ShiftModule, STM's CSTM temporal conv, EAN, BQN).

PyTorch's `nn.Conv1d(C, C, k, padding=k // 2, groups=C, bias=False)` applied to
(N*H*W, C, T): out[t, c] = sum_j w[c, 0, j] * x[t + j - k // 2, c], zero padded at the
clip borders (cross-correlation). Here the input stays folded, (batch * frames, H, W, C)
clip-major, and the kernel is (k, C): kernel[j, c] = w[c, 0, j].
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int

INITS = ("identity", "tsm_shift", "stm_shift", "zeros")


def shift_kernel(init, kernel_size, channels, fold_div):
    """The (kernel_size, channels) initial kernel as nested lists of floats.

    identity: every channel w[k // 2] = 1.
    tsm_shift (TSM / TEA ShiftModule mode 'shift'): fold = channels // fold_div; channels
        [0, fold) take frame t+1, [fold, 2 fold) frame t-1, the rest frame t.
    stm_shift (STM CSTM): channels [0, fold) take frame t-1, the last fold frame t+1, the
        rest frame t.
    zeros: all zero.
    """
    center = kernel_size // 2
    taps = [center] * channels
    fold = channels // fold_div
    if init == "tsm_shift":
        for c in range(min(2 * fold, channels)):
            taps[c] = center + 1 if c < fold else center - 1
    elif init == "stm_shift":
        for c in range(fold):
            taps[c] = center - 1
            taps[channels - 1 - c] = center + 1
    kernel = [[0.0] * channels for _ in range(kernel_size)]
    if init != "zeros":
        for c, j in enumerate(taps):
            kernel[j][c] = 1.0
    return kernel


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalDepthwiseConv1D(keras.layers.Layer):
    """Channel-wise temporal convolution on folded frames, no bias.

    Args:
        frames: frames per clip.
        kernel_size: odd temporal kernel size (3 in TEA and STM).
        init: "identity", "tsm_shift", "stm_shift" or "zeros" (see `shift_kernel`).
        fold_div: for the shift inits, channels // fold_div channels move each way
            (TEA's last group: 2; STM: 4; TSM: 8).

    Input and output: (batch * frames, height, width, channels).
    """

    def __init__(self, frames, kernel_size=3, init="identity", fold_div=8, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        self.kernel_size = positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd. Received: kernel_size={kernel_size!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}. Received: init={init!r}")
        self.init = init
        self.fold_div = positive_int(fold_div, "fold_div")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name} needs a known channel count. Received: "
                             f"input shape {tuple(input_shape)}")
        initial = shift_kernel(self.init, self.kernel_size, channels, self.fold_div)
        self.kernel = self.add_weight(
            (self.kernel_size, channels), initializer=keras.initializers.Constant(initial),
            name="kernel")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        shape = ops.shape(inputs)
        # One depthwise conv over (batch, frames, H*W, C) with a (k, 1) kernel: 'same' zero
        # padding of k // 2 frames at both clip ends, as PyTorch's Conv1d padding. 2-3x
        # faster on CPU than k shifted slices (benchmarks/bench_zoo.py), and a TFLite
        # builtin (DEPTHWISE_CONV_2D).
        x = ops.reshape(inputs, (-1, self.frames, shape[1] * shape[2], shape[3]))
        kernel = ops.reshape(ops.cast(self.kernel, x.dtype),
                             (self.kernel_size, 1, shape[3], 1))
        out = ops.depthwise_conv(x, kernel, strides=1, padding="same")
        return ops.reshape(out, shape)

    def macs_per_frame(self):
        shape = self.input.shape
        return shape[1] * shape[2] * shape[3] * self.kernel_size

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, kernel_size=self.kernel_size, init=self.init,
                      fold_div=self.fold_div)
        return config
