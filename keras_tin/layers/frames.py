"""Moving between clips (batch, frames, ...) and folded frames (batch*frames, ...)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tin")
class FoldFrames(keras.layers.Layer):
    """(batch, frames, H, W, C) -> (batch * frames, H, W, C), checking the frame count."""

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames

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

    def build(self, input_shape):
        self._check(input_shape)

    def call(self, inputs):
        self._check(tuple(inputs.shape))
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))  # (B*T, H, W, C)

    def compute_output_shape(self, input_shape):
        b = None if input_shape[0] is None else input_shape[0] * self.frames
        return (b,) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config.update(frames=self.frames)
        return config


@keras.saving.register_keras_serializable(package="keras_tin")
class UnfoldFrames(keras.layers.Layer):
    """(batch * frames, ...) -> (batch, frames, ...)."""

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames

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
        self.frames = frames

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
