"""TemporalConv2D: a bias-free convolution with a temporal module in front of it.

This is how TIN/TSM sit in a residual branch: "temporal module, then the first
conv". Because the conv is linear and the module only changes its first
`changed` channels, the layer computes (with fuse=True)

    conv(module(x)) = conv(x) + conv_{first changed in-channels}(module.delta(x))

which never copies the pass-through channels (PERF_NOTES.md). fuse=False is the
literal composition; both hold the same single kernel, so weights and parameter
counts are identical. Exports trace the literal form (keras_tin.ops.dispatch.export_graph):
a traced fused graph would store the kernel's slice as a second constant.
"""

import keras
from keras import ops

from keras_tin.ops import dispatch


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalConv2D(keras.layers.Layer):
    """Conv2D without bias, symmetric zero padding (PyTorch style), optional temporal module.

    Args:
        filters: output channels.
        kernel_size: square kernel size.
        strides: square stride.
        padding: symmetric zero padding in pixels (PyTorch's `padding`).
        temporal_module: None, or a TemporalInterlace / TemporalShift layer.
        fuse: compute the module through its delta (see module docstring).
    """

    def __init__(self, filters, kernel_size=1, strides=1, padding=0, temporal_module=None,
                 fuse=True, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        if isinstance(temporal_module, dict):
            temporal_module = keras.saving.deserialize_keras_object(temporal_module)
        self.temporal_module = temporal_module
        self.fuse = fuse
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight((k, k, input_shape[-1], self.filters),
                                      self.kernel_initializer, name="kernel")
        if self.temporal_module is not None and not self.temporal_module.built:
            self.temporal_module.build(input_shape)

    def _conv(self, x, kernel):
        if self.padding:
            p = self.padding
            x = ops.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        return ops.conv(x, ops.cast(kernel, x.dtype), strides=self.strides, padding="valid")

    def call(self, inputs):
        module = self.temporal_module
        if module is None:
            return self._conv(inputs, self.kernel)
        if not self.fuse or dispatch.is_export_graph():
            return self._conv(module(inputs), self.kernel)
        changed = module.changed_channels(inputs.shape[-1])
        delta = module.delta(inputs)  # (N*T, H, W, changed)
        return self._conv(inputs, self.kernel) + self._conv(delta, self.kernel[:, :, :changed, :])

    def compute_output_shape(self, input_shape):
        def out(size):
            if size is None:
                return None
            return (size + 2 * self.padding - self.kernel_size) // self.strides + 1
        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
            padding=self.padding, fuse=self.fuse,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            temporal_module=(None if self.temporal_module is None
                             else keras.saving.serialize_keras_object(self.temporal_module)),
        )
        return config
