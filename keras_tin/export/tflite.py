"""TFLite / LiteRT export: float32, float16, dynamic-range and full-integer int8.

Builtin ops only: the converter is never allowed SELECT_TF_OPS (Flex), so every file runs
on the stock LiteRT runtime (ai-edge-litert, Android, iOS). The graph is traced on the
portable keras.ops path, which lowers to CONV_2D, BATCH_MATMUL, TRANSPOSE, RESHAPE and
elementwise builtins.
"""

import os
import tempfile

from keras_tin.export import calibration
from keras_tin.export.serving import clip_shape
from keras_tin.export.serving import write_archive

QUANTIZATIONS = (None, "float16", "dynamic", "int8")


def _check(quantize, representative_dataset):
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}")
    if quantize == "int8" and representative_dataset is None:
        raise ValueError(
            "quantize='int8' calibrates activation ranges and needs representative clips: "
            "pass representative_dataset= an iterable of clips (frames, H, W, 3) on the "
            "0-255 scale, or a dataset of (clips, labels).")


def convert_tflite(model, quantize=None, representative_dataset=None, batch_size=1,
                   input_dtype="float32", max_calibration_clips=100, integer_only=True):
    """Converts `model` to a TFLite flatbuffer (bytes); see `export_tflite`."""
    import tensorflow as tf

    _check(quantize, representative_dataset)
    with tempfile.TemporaryDirectory() as tmp:
        write_archive(model, tmp, batch_size=batch_size, input_dtype=input_dtype)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration.representative_dataset(
                representative_dataset, clip_shape(model), max_calibration_clips)
            if integer_only:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()


def export_tflite(model, path, quantize=None, representative_dataset=None, batch_size=1,
                  input_dtype="float32", max_calibration_clips=100, integer_only=True):
    """Writes `model` as a .tflite file with builtin ops only.

    Args:
        model: a keras_tin model with static (frames, H, W, 3) input.
        path: output .tflite file.
        quantize: None (float32), "float16" (fp16 weights, float compute), "dynamic"
            (int8 weights, float activations) or "int8" (full-integer: int8 weights and
            activations, calibrated on `representative_dataset`).
        representative_dataset: calibration clips for "int8"; see
            keras_tin.export.calibration for the accepted forms (including the output of
            keras_tin.data.load_dataset).
        batch_size: static batch of the input (1, what phones run); None for dynamic.
        input_dtype: "float32" (RGB on 0-255) or "uint8" (raw bytes, cast in the graph).
        max_calibration_clips: clips used for int8 calibration.
        integer_only: for "int8", allow only int8 builtin kernels.

    Returns:
        The file size in bytes.
    """
    data = convert_tflite(model, quantize, representative_dataset, batch_size, input_dtype,
                          max_calibration_clips, integer_only)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)
