"""NextFrameDifference: the feature-level motion of TEA's motion excitation (ME) and STM's
channel-wise motion module (CMM).

On reduced features b (batch * frames, H, W, C), clip-major:
    d[t] = DWConv3x3(b)[t + 1] - b[t]   for t < T - 1,     d[T - 1] = 0,
where DWConv3x3 is a depthwise 3x3 conv, stride 1, zero padding 1, no bias (PyTorch
`nn.Conv2d(C, C, 3, padding=1, groups=C, bias=False)`, weight (C, 1, 3, 3) -> kernel
(3, 3, C, 1)). TEA (MEModule) then pools, excites and gates; STM (CMM) maps d back to the
block's channels with a 1x1 conv.
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import check_folded_input
from keras_tin.layers.temporal_interlace import positive_int


@keras.saving.register_keras_serializable(package="keras_tin")
class NextFrameDifference(keras.layers.Layer):
    """d[t] = DWConv3x3(b)[t+1] - b[t], zero at the clip's last frame.

    Args:
        frames: frames per clip (>= 1; with one frame the output is all zero).
        kernel_size: the depthwise conv's spatial size (3 in TEA and STM).

    Input and output: (batch * frames, height, width, channels).
    """

    def __init__(self, frames, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        self.kernel_size = positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd. Received: kernel_size={kernel_size!r}")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name} needs a known channel count. Received: "
                             f"input shape {tuple(input_shape)}")
        k = self.kernel_size
        # PyTorch Conv2d default init: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...).
        bound = 1.0 / (k * k) ** 0.5
        self.kernel = self.add_weight(
            (k, k, channels, 1), initializer=keras.initializers.RandomUniform(-bound, bound),
            name="kernel")

    def call(self, inputs):
        check_folded_input(self, tuple(inputs.shape), self.frames)
        shape = ops.shape(inputs)
        t = self.frames
        conv = ops.depthwise_conv(inputs, ops.cast(self.kernel, inputs.dtype), strides=1,
                                  padding="same")
        conv = ops.reshape(conv, (-1, t, shape[1], shape[2], shape[3]))
        base = ops.reshape(inputs, (-1, t, shape[1], shape[2], shape[3]))
        diff = conv[:, 1:] - base[:, :-1]
        diff = ops.concatenate([diff, ops.zeros_like(base[:, :1])], axis=1)
        return ops.reshape(diff, shape)

    def macs_per_frame(self):
        shape = self.input.shape
        return shape[1] * shape[2] * shape[3] * self.kernel_size ** 2

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, kernel_size=self.kernel_size)
        return config


def reduced_difference(x, frames, reduction, conv_name, bn_name, diff_name, initializer,
                       module):
    """The front end TEA's ME and STM's CMM share: 1x1 conv to C // reduction channels
    (no bias) -> BatchNormalization (PyTorch eps and momentum, no ReLU) ->
    NextFrameDifference (3x3 depthwise). `module` names the caller in the error raised when
    x has fewer than `reduction` channels."""
    channels = x.shape[-1]
    reduced = channels // reduction
    if reduced < 1:
        raise ValueError(f"{module} reduces {channels} channels by {reduction}: at least "
                         f"{reduction} channels are needed (use a larger base_filters).")
    b = keras.layers.Conv2D(reduced, 1, use_bias=False, kernel_initializer=initializer,
                            name=conv_name)(x)
    b = keras.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=1e-5, name=bn_name)(b)
    return NextFrameDifference(frames, 3, name=diff_name)(b)
