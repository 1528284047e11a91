"""Conv3D whose kernel is flat in time or in space, computed as a Conv2D.

A (1, kh, kw) kernel (R(2+1)D's spatial conv, MC3's convs, 1x1x1 shortcuts) is a Conv2D
applied to every frame: the frames are folded into the batch. A (kt, 1, 1) kernel
(R(2+1)D's temporal conv) is a Conv2D of kernel (kt, 1) on the (time, H*W) plane. Same
weights (the Conv3D kernel, (kt, kh, kw, in, out)), same arithmetic, but TensorFlow Lite
sees CONV_2D, which it quantizes to int8, where CONV_3D has a float kernel only (an int8
export left every Conv3D in float). Any other kernel runs as the Conv3D it is.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tin")
class PlanarConv3D(keras.layers.Conv3D):
    """keras.layers.Conv3D (channels_last, groups 1, dilation 1) that runs a kernel with a
    singleton time axis or singleton spatial axes as a Conv2D (see the module docstring)."""

    def _planar(self):
        kt, kh, kw = self.kernel_size
        if (self.data_format != "channels_last" or self.groups != 1
                or tuple(self.dilation_rate) != (1, 1, 1)):
            return None
        if kt == 1:
            return "spatial"
        if kh == 1 and kw == 1:
            return "temporal"
        return None

    def call(self, inputs):
        planar = self._planar()
        if planar is None:
            return super().call(inputs)
        st, sh, sw = self.strides
        if planar == "spatial":  # (1, kh, kw): frames folded into the batch
            if st > 1:  # a time kernel of 1 with stride st keeps every st-th frame
                inputs = inputs[:, ::st]
            shape = ops.shape(inputs)
            x = ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))
            y = ops.conv(x, self.kernel[0], strides=(sh, sw), padding=self.padding)
            out = ops.shape(y)
            y = ops.reshape(y, (-1, shape[1], out[1], out[2], self.filters))
        else:  # (kt, 1, 1): a (kt, 1) conv on the time x (H * W) plane
            if sh > 1 or sw > 1:  # a 1 x 1 spatial kernel with stride keeps every sh-th row
                inputs = inputs[:, :, ::sh, ::sw]
            shape = ops.shape(inputs)
            x = ops.reshape(inputs, (-1, shape[1], shape[2] * shape[3], shape[4]))
            y = ops.conv(x, self.kernel[:, 0], strides=(st, 1), padding=self.padding)
            y = ops.reshape(y, (-1, ops.shape(y)[1], shape[2], shape[3], self.filters))
        if self.use_bias:
            y = ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return y
