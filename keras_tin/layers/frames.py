"""Moving between clips (batch, frames, ...) and folded frames (batch*frames, ...)."""

import warnings

import keras
from keras import ops

from keras_tin.layers.temporal_interlace import positive_int
from keras_tin.ops import dispatch


def _is_concrete(x):
    """Whether x holds values now (eager), rather than being traced into a graph."""
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        return tf.executing_eagerly()
    if backend == "jax":
        import jax
        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        import torch
        compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        return not (compiling and compiling())
    return True  # numpy


@keras.saving.register_keras_serializable(package="keras_tin")
class FoldFrames(keras.layers.Layer):
    """(batch, frames, H, W, C) -> (batch * frames, H, W, C), checking the clips.

    Checks:
    - rank 5, and `frames` frames per clip: from the static shape, and where that is
      unknown (a tf.function traced with an input signature whose frame axis is None) in
      the graph: a tf.debugging.Assert names both counts. Whatever the backend, and under
      XLA, which drops asserts, the fold itself reshapes to batch * frames rows, so any
      other frame count fails instead of silently regrouping the frames into other clips
      (2 clips of 4 frames read as 1 clip of 8).
    - channels (optional): the channel count the clips must have. The keras_tin models
      set 3, and fold before their Normalization layer, which would otherwise broadcast a
      1-channel clip to RGB.
    - check_pixel_range (optional): the clips are RGB on the 0-255 scale. The first eager
      call whose values all lie within [-1, 1] (and are not all 0: 0-1 or -1-1 scaled
      clips) warns once per layer. Only concrete values are checked (eager calls such as
      `model(clips)`, and `predict` on the PyTorch backend, which runs eagerly): traced
      functions (`predict`/`fit` on TensorFlow and JAX, tf.function, XLA, exports)
      contain no extra op and are not checked.
    """

    def __init__(self, frames, channels=None, check_pixel_range=False, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")
        self.channels = None if channels is None else positive_int(channels, "channels")
        self.check_pixel_range = bool(check_pixel_range)
        self._range_warned = False

    def _check(self, shape):
        if len(shape) != 5:
            raise ValueError(
                f"Expected video clips of rank 5 (batch, frames, height, width, channels). "
                f"Received: input shape={tuple(shape)}")
        if shape[1] is not None and shape[1] != self.frames:
            raise ValueError(
                f"This model was built for frames={self.frames}, but the clips have "
                f"{shape[1]} frames (input shape={tuple(shape)}). Sample {self.frames} frames "
                f"per clip, or build the model with frames={shape[1]}.")
        if self.channels is not None and shape[-1] is not None and shape[-1] != self.channels:
            raise ValueError(
                f"This model takes clips with {self.channels} channels (RGB), but the clips "
                f"have {shape[-1]} (input shape={tuple(shape)}). Convert grayscale clips to "
                f"RGB first, e.g. np.repeat(clips, 3, axis=-1).")

    def build(self, input_shape):
        self._check(input_shape)

    def _assert_in_graph(self, inputs):
        """TensorFlow graphs: assert the frame (and channel) counts the static shape lacks.

        Eager calls have static shapes (checked in _check); under XLA the assert would be
        dropped (the reshape in call still fails); other backends trace static shapes.
        """
        if keras.backend.backend() != "tensorflow":
            return inputs
        import tensorflow as tf

        if tf.executing_eagerly() or dispatch.in_xla_context():
            return inputs
        shape = tf.shape(inputs)
        checks = []
        if inputs.shape[1] is None:
            checks.append(tf.debugging.Assert(tf.equal(shape[1], self.frames), [
                f"FoldFrames '{self.name}': this model was built for frames={self.frames}, "
                "but the clips have", shape[1], f"frames (input shape", shape,
                f"). Sample {self.frames} frames per clip, or build the model for the "
                "clips' frame count."]))
        if self.channels is not None and inputs.shape[-1] is None:
            checks.append(tf.debugging.Assert(tf.equal(shape[4], self.channels), [
                f"FoldFrames '{self.name}': this model takes clips with {self.channels} "
                "channels, but the clips have", shape[4]]))
        if not checks:
            return inputs
        with tf.control_dependencies(checks):
            return tf.identity(inputs)

    def _warn_pixel_range(self, inputs):
        if not _is_concrete(inputs):
            return
        largest = float(ops.convert_to_numpy(ops.max(ops.abs(ops.cast(inputs, "float32")))))
        if 0.0 < largest <= 1.0:
            self._range_warned = True
            warnings.warn(
                f"keras_tin: FoldFrames '{self.name}': the model takes RGB clips on the "
                f"0-255 scale (it normalises them itself), but these clips lie within "
                f"[-1, 1] (largest |value| {largest:.4g}). Multiply 0-1 clips by 255, or "
                "build the model with normalization=None if you normalise the clips "
                "yourself. (Checked on eager calls only; warned once per model.)",
                UserWarning, stacklevel=2)

    def call(self, inputs):
        static = tuple(inputs.shape)
        self._check(static)
        if self.check_pixel_range and not self._range_warned:
            self._warn_pixel_range(inputs)
        shape = ops.shape(inputs)
        if static[1] is None or (self.channels is not None and static[-1] is None):
            inputs = self._assert_in_graph(inputs)
        if static[1] is None:
            # batch * frames rows rather than -1: a reshape that fails for any other
            # frame count, on every backend and under XLA (where the assert is dropped).
            rows = shape[0] * self.frames
        else:
            rows = -1  # static shape checked: keeps traced and exported graphs as before
        return ops.reshape(inputs, (rows, shape[2], shape[3], shape[4]))  # (B*T, H, W, C)

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] * self.frames
        return (b,) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames, channels=self.channels,
                      check_pixel_range=self.check_pixel_range)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class UnfoldFrames(keras.layers.Layer):
    """(batch * frames, ...) -> (batch, frames, ...)."""

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")

    def call(self, inputs):
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, self.frames) + tuple(shape[1:]))  # (B, T, ...)

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.frames
        return (b, self.frames) + tuple(input_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class FrameConsensus(keras.layers.Layer):
    """TSN's segmental consensus: (batch * frames, K) -> (batch, K) by averaging over frames."""

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = positive_int(frames, "frames")

    def call(self, inputs):
        x = ops.reshape(inputs, (-1, self.frames, inputs.shape[-1]))  # (B, T, K)
        return ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] // self.frames
        return (b, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config
