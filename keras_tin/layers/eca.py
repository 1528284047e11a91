"""ECA: efficient channel attention (Wang et al., ECA-Net, CVPR 2020).

On a feature map x (batch, H, W, C), per image:

    y = mean of x over H, W                      (C values)
    z[c] = sum_j w[j] * y[c + j - (k - 1) / 2]   a 1-D convolution over the CHANNEL axis,
                                                 one input and one output channel, odd
                                                 kernel size k, zero padding (k - 1) / 2 at
                                                 both channel ends, no bias
    out = x * sigmoid(z)                         (broadcast over H, W)

PyTorch: `nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)` on the pooled descriptor
seen as a one-channel sequence of length C; its weight (1, 1, k) is the kernel (k, 1, 1)
here (the Conv1d -> Keras layout [out, in, k] -> [k, in, out]); kernel[j, 0, 0] = w[0, 0, j].
No temporal modelling: the frames of a clip are independent images.
"""

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import positive_int


def check_kernel_size(kernel_size, name="kernel_size"):
    """An odd positive Python/NumPy integer (bools refused); returns it as an int."""
    value = positive_int(kernel_size, name)
    if value % 2 != 1:
        raise ValueError(f"{name} must be odd (the convolution is zero padded by (k - 1) / 2 "
                         f"at both channel ends). Received: {name}={kernel_size!r}")
    return value


@keras.saving.register_keras_serializable(package="keras_tin")
class ECA(keras.layers.Layer):
    """Efficient channel attention: x * sigmoid(Conv1D_k(GAP(x)) over channels).

    Args:
        kernel_size: odd size k of the 1-D convolution across channels (the released
            ECA-ResNets use 3, 5 or 7 per stage).

    Input and output: (batch, height, width, channels); the kernel has shape
    (kernel_size, 1, 1).
    """

    def __init__(self, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = check_kernel_size(kernel_size)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name} takes (batch, height, width, channels) with a known "
                             f"channel count. Received: input shape {tuple(input_shape)}")
        k = self.kernel_size
        # PyTorch's Conv1d default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), ...),
        # fan_in = k.
        bound = 1.0 / k ** 0.5
        self.kernel = self.add_weight(
            (k, 1, 1), initializer=keras.initializers.RandomUniform(-bound, bound),
            name="kernel")

    def call(self, inputs):
        pad = (self.kernel_size - 1) // 2
        y = ops.mean(inputs, axis=(1, 2))  # (batch, C)
        y = ops.pad(ops.expand_dims(y, -1), ((0, 0), (pad, pad), (0, 0)))  # (batch, C+2p, 1)
        z = ops.conv(y, ops.cast(self.kernel, inputs.dtype), strides=1, padding="valid")
        gate = ops.sigmoid(z[:, :, 0])  # (batch, C)
        return inputs * gate[:, None, None, :]

    def macs_per_frame(self):
        """The 1-D convolution's multiply-accumulates, C * k per image. Like the rest of
        keras_tin.utils.flops (convolutions and dense layers only, as in the papers), the
        pooling, the sigmoid and the rescaling multiply are left out."""
        return self.input.shape[-1] * self.kernel_size

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size)
        return config
