"""TemporalInterlace: the TIN module of docs/TIN_SPEC.md as a Keras layer."""

import numbers

import keras
from keras import ops

from keras_tin.ops import portable
from keras_tin.ops import dispatch

OFFSET_BIAS_INIT = 0.5108  # logit(0.625): 4 * (0.625 - 0.5) = +0.5 frames at start


def positive_int(value, name, minimum=1, requirement="a positive integer"):
    """int(value) for an integer >= minimum, Python or NumPy; bools (True == 1) refused
    (NumPy's bool is no numbers.Integral)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be {requirement}. Received: {name}={value!r}")
    return int(value)


def check_folded_input(layer, shape, frames):
    """Rank-4 (batch*frames, H, W, C) input with a batch that frames divides."""
    if len(shape) != 4:
        raise ValueError(
            f"{layer.__class__.__name__} '{layer.name}' expects folded frames of rank 4 "
            f"(batch*frames, height, width, channels). Received: input shape={tuple(shape)}"
        )
    if shape[0] is not None and shape[0] % frames != 0:
        raise ValueError(
            f"{layer.__class__.__name__} '{layer.name}': the folded batch {shape[0]} is not "
            f"a multiple of frames={frames}. Feed (batch, frames, H, W, C) clips to the model "
            f"or fold exactly frames={frames} frames per clip."
        )


@keras.saving.register_keras_serializable(package="keras_tin")
class TemporalInterlace(keras.layers.Layer):
    """Temporal Interlacing (TIN, AAAI 2020): learned fractional temporal shifts.

    The first `channels // shift_div` channels form 4 groups; an OffsetNet predicts
    one offset per clip for 2 base groups (mirrored to 4: [o0, o1, -o0, -o1]), a
    WeightNet one weight per frame, and each group is linearly interpolated along
    time (zero outside the clip) and re-weighted. Other channels pass through.

    Args:
        frames: frames per clip T. Input rows n*T .. n*T+T-1 are the frames of clip n.
            The OffsetNet's dense layers are T x T, so a layer is tied to its T.
        shift_div: 1 / fraction of channels that are interlaced (4 in the paper).
        implementation: "auto", "portable" (keras.ops) or "custom_op" (the compiled
            TensorFlow op; see keras_tin.ops.dispatch).

    Input and output: (batch * frames, height, width, channels).
    """

    def __init__(self, frames, shift_div=4, implementation="auto", **kwargs):
        super().__init__(**kwargs)
        frames = positive_int(frames, "frames")
        shift_div = positive_int(shift_div, "shift_div")
        dispatch.check_implementation(implementation)
        self.frames = frames
        self.shift_div = shift_div
        self.implementation = implementation

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.shift_div or (channels // self.shift_div) % 4:
            raise ValueError(
                f"TemporalInterlace needs channels divisible by 4 * shift_div = "
                f"{4 * self.shift_div} (4 equal groups in the first channels // shift_div). "
                f"Received: channels={channels}, shift_div={self.shift_div}"
            )
        f = channels // self.shift_div
        t = self.frames
        self.interlaced_channels = f
        glorot = keras.initializers.GlorotUniform

        def weight(shape, initializer, name):
            # autocast=False: under mixed precision these stay float32 (the offsets are
            # sub-frame fractions).
            return self.add_weight(shape, initializer, name=name, dtype="float32",
                                   autocast=False)

        self.offset_conv_kernel = weight((3, f, 1), glorot(), "offset_conv_kernel")
        self.offset_conv_bias = weight((1,), "zeros", "offset_conv_bias")
        self.offset_fc1_kernel = weight((t, t), glorot(), "offset_fc1_kernel")
        self.offset_fc1_bias = weight((t,), "zeros", "offset_fc1_bias")
        self.offset_fc2_kernel = weight((t, 2), glorot(), "offset_fc2_kernel")
        self.offset_fc2_bias = weight((2,), keras.initializers.Constant(OFFSET_BIAS_INIT),
                                      "offset_fc2_bias")
        self.weight_conv_kernel = weight((3, f, 2), glorot(), "weight_conv_kernel")
        self.weight_conv_bias = weight((2,), "zeros", "weight_conv_bias")

    def offsets_and_weights(self, inputs):
        """Per-group offsets (N, 4) and weights (N, T, 4), float32, for a folded batch.

        This is what the layer applies; call it on a batch to plot what TIN learned.
        An unbuilt layer is first built for the batch's shape (its weights are then
        freshly initialised, as on a first call).
        """
        check_folded_input(self, tuple(inputs.shape), self.frames)
        if not self.built:
            self.build(tuple(inputs.shape))
        f = self.interlaced_channels
        # Offsets and weights stay float32 under mixed precision: a is a sub-frame fraction.
        desc = dispatch.descriptor_fn(self.implementation)(inputs, f)  # (N*T, F)
        desc = ops.reshape(desc, (-1, self.frames, f))  # (N, T, F)
        z = ops.conv(desc, self.offset_conv_kernel, padding="same")
        # Bias before the slice: `z[..., 0] + bias` made the TFLite converter fail on the
        # next FULLY_CONNECTED once the bias was non-zero (any trained model).
        z = (z + self.offset_conv_bias)[..., 0]  # (N, T)
        z = ops.relu(ops.matmul(z, self.offset_fc1_kernel) + self.offset_fc1_bias)
        z = ops.matmul(z, self.offset_fc2_kernel) + self.offset_fc2_bias  # (N, 2)
        offsets = 4.0 * (ops.sigmoid(z) - 0.5)
        w = ops.conv(desc, self.weight_conv_kernel, padding="same")
        weights = 2.0 * ops.sigmoid(w + self.weight_conv_bias)  # (N, T, 2)
        return portable.mirror_groups(offsets, weights)

    def call(self, inputs):
        offsets, weights = self.offsets_and_weights(inputs)
        fn = dispatch.interlace_fn(self.implementation)
        return fn(inputs, offsets, weights, self.frames, self.shift_div)

    def delta(self, inputs):
        """interlace(x)[..., :F] - x[..., :F]; see keras_tin.ops.interlace_delta."""
        offsets, weights = self.offsets_and_weights(inputs)
        fn = dispatch.interlace_delta_fn(self.implementation)
        return fn(inputs, offsets, weights, self.frames, self.shift_div)

    def changed_channels(self, channels):
        return channels // self.shift_div

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, shift_div=self.shift_div,
                      implementation=self.implementation)
        return config
