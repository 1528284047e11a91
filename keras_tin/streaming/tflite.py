"""TFLite export of a step model (keras_tin.streaming.build_step_model) and a runner.

The file has one signature, "serving_default", with named inputs "frame" (1, H, W, 3)
float32 RGB on 0-255 and "state_block<i>" (1, h, w, c) float32, and named outputs "logits"
(1, classes) and "new_state_block<i>": every tensor has at most 4 dimensions (GPU delegates
reject 5-D tensors) and the batch is 1. Builtin ops only (no Flex).

quantize="int8": full-integer kernels, calibrated on frames stepped through the Keras step
model in order (so the states it sees are real ones); the I/O tensors stay float32 (a
QUANTIZE / DEQUANTIZE at each edge), so the state is carried between calls as float.
"""

import os

import numpy as np

SIGNATURE = "serving_default"


def _serving_module(step_model):
    import tensorflow as tf

    from keras_tin.export.serving import tf_variables

    names = [t.name for t in step_model.inputs]
    specs = [tf.TensorSpec(tuple(t.shape), tf.float32, name=t.name) for t in step_model.inputs]
    out_names = ["logits"] + ["new_" + n for n in names[1:]]

    class StepModule(tf.Module):
        def __init__(self):
            super().__init__()
            # the tf.Variables under the Keras ones, so that the converter freezes them
            self.weights = tf_variables(step_model.variables)

        @tf.function(input_signature=specs)
        def serve(self, *inputs):
            outputs = step_model(list(inputs), training=False)
            return dict(zip(out_names, outputs))

    return StepModule()


def _representative(step_model, frames):
    from keras_tin.streaming.step_model import initial_state
    from keras_tin.streaming.step_model import step

    names = [t.name for t in step_model.inputs]

    def generate():
        state = initial_state(step_model)
        for frame in frames:
            frame = np.asarray(frame, "float32")[None]
            yield dict(zip(names, [frame] + state))
            _, state = step(step_model, frame, state)
    return generate


def convert_step_tflite(step_model, quantize=None, calibration_frames=None):
    """The step model as a TFLite flatbuffer (bytes); see the module docstring.

    calibration_frames (quantize="int8"): a sequence of (H, W, 3) RGB 0-255 frames, stepped
    in order (a few clips' worth: the states must be realistic).
    """
    import tensorflow as tf

    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8'. Received: quantize={quantize!r}")
    if quantize == "int8" and calibration_frames is None:
        raise ValueError("quantize='int8' needs calibration_frames (RGB 0-255 frames).")
    if any(len(t.shape) > 4 for t in step_model.inputs + step_model.outputs):
        raise ValueError("A step model's tensors must have at most 4 dimensions.")
    module = _serving_module(step_model)
    function = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(step_model, list(calibration_frames))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export_step_tflite(step_model, path, quantize=None, calibration_frames=None):
    """Writes convert_step_tflite(...) to `path`; returns the size in bytes."""
    data = convert_step_tflite(step_model, quantize, calibration_frames)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)


class TFLiteStepModel:
    """Runs an exported step file: `.step(frame)` ((H, W, 3) or (1, H, W, 3) float RGB 0-255)
    returns the logits (classes,) and carries the state; `.reset()` zeroes it."""

    def __init__(self, model, num_threads=None):
        from keras_tin.export.litert import load_interpreter

        self.interpreter = load_interpreter(model, num_threads=num_threads)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        details = self.runner.get_input_details()
        self.frame_shape = tuple(details["frame"]["shape"])
        self.state_names = sorted((n for n in details if n != "frame"),
                                  key=lambda n: int(n.rsplit("block", 1)[-1]))
        self.state_shapes = {n: tuple(details[n]["shape"]) for n in self.state_names}
        self.reset()

    def reset(self):
        self.state = {n: np.zeros(s, "float32") for n, s in self.state_shapes.items()}

    def step(self, frame):
        frame = np.asarray(frame, "float32")
        if frame.ndim == 3:
            frame = frame[None]
        if tuple(frame.shape) != self.frame_shape:
            raise ValueError(f"frame must have shape {self.frame_shape[1:]} (or "
                             f"{self.frame_shape}). Received: shape={frame.shape}")
        out = self.runner(frame=frame, **self.state)
        self.state = {n: out["new_" + n] for n in self.state_names}
        return out["logits"][0]
