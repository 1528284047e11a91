"""TFLite / LiteRT export: float32, float16, dynamic-range and full-integer int8.

Builtin ops only: the converter is never allowed SELECT_TF_OPS (Flex), so every file runs
on the stock LiteRT runtime (ai-edge-litert, Android, iOS). The graph is traced on the
portable keras.ops path, which lowers to CONV_2D, BATCH_MATMUL, TRANSPOSE, RESHAPE and
elementwise builtins.

Full-integer int8 is calibrated, then quantized in a second step (see
`widen_degenerate_ranges`): a tensor that is zero on every calibration clip (a dead ReLU,
e.g. a TIN OffsetNet hidden layer of a network whose BN statistics do not match the
clips) would otherwise get the scale 2e-6 / 255, and an int8 FULLY_CONNECTED writing it
has a requantization scale (input scale x weight scale / output scale) far above what
XNNPACK accepts. LiteRT's XNNPACK delegate then fails to create its runtime in
allocate_tensors: a RuntimeError on a small model, an abort ("free(): double free
detected in tcache 2") on TIN-ResNet-50 (ai-edge-litert 2.3.0). The builtin kernels run
such a file, but the consumer's bias is squeezed into that tiny scale as well.
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


def float32_model(model):
    """`model`, or a float32-compute copy of it when it was built under mixed precision.

    TFLite's builtin float kernels are float32 (its float16 mode stores fp16 weights but
    computes in float32), and the converter cannot translate the float16 ops of a
    mixed_float16 graph. The copy has the same architecture and weights (variables are
    float32 under mixed precision already), with every layer's dtype policy float32.
    """
    import keras

    if all(not layer.dtype_policy.name.startswith("mixed")
           for layer in model._flatten_layers(include_self=True)):
        return model

    def to_float32(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "DTypePolicy" and str(
                    obj.get("config", {}).get("name", "")).startswith("mixed"):
                return dict(obj, config=dict(obj["config"], name="float32"))
            return {key: to_float32(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [to_float32(value) for value in obj]
        return obj

    copy = keras.saving.deserialize_keras_object(
        to_float32(keras.saving.serialize_keras_object(model)))
    copy.set_weights(model.get_weights())
    return copy


def convert_tflite(model, quantize=None, representative_dataset=None, batch_size=1,
                   input_dtype="float32", max_calibration_clips=100, integer_only=True):
    """Converts `model` to a TFLite flatbuffer (bytes); see `export_tflite`."""
    import tensorflow as tf

    _check(quantize, representative_dataset)
    model = float32_model(model)
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
                representative_dataset, clip_shape(model), max_calibration_clips,
                input_dtype)
            if integer_only:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            return _calibrate_and_quantize(converter)
        return converter.convert()


# A calibrated range narrower than this is "degenerate": the tensor was zero on every
# calibration clip. It takes the range of the nearest upstream activation instead.
DEGENERATE_RANGE = 1e-5
DEGENERATE_RANGE_FALLBACK = (-1.0, 1.0)


def widen_degenerate_ranges(calibrated, min_range=DEGENERATE_RANGE,
                            fallback=DEGENERATE_RANGE_FALLBACK):
    """Replaces every calibrated activation range narrower than `min_range`.

    `calibrated` is a float .tflite flatbuffer carrying calibration statistics (what
    TFLiteConverter returns with `_experimental_calibrate_only`). A tensor that is zero on
    every calibration clip records [0, 0], which the quantizer turns into the scale
    2e-6 / 255 (see the module docstring for why LiteRT's XNNPACK delegate then fails).
    Such a tensor gets the range of the first non-degenerate activation input of the op
    that produces it (searching upstream through degenerate inputs), so its scale is the
    local activation scale and XNNPACK's requantization ratios (input scale x weight
    scale / output scale for FULLY_CONNECTED and CONV_2D, input / output scale for ADD)
    stay near those of the live tensors around it; `fallback` if there is none. Both
    contain 0, so zero stays exact. The float numerics are untouched: only the
    quantization parameters of those tensors (and bias scales derived from them) change.

    Returns (new flatbuffer bytes, names of the widened tensors).
    """
    from tensorflow.lite.python import schema_py_generated as schema

    buf = bytearray(calibrated)
    model = schema.Model.GetRootAs(buf, 0)
    widened = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        stats = {}  # tensor index -> (min view, max view) into buf
        for t in range(subgraph.TensorsLength()):
            q = subgraph.Tensors(t).Quantization()
            if q is not None and q.MinLength() == 1 and q.MaxLength() == 1 and not q.ScaleLength():
                stats[t] = (q.MinAsNumpy(), q.MaxAsNumpy())
        producer = {}
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            for j in range(op.OutputsLength()):
                producer[op.Outputs(j)] = op

        def degenerate(t):
            lo, hi = stats[t]
            # The quantizer extends every range to contain 0; only [0, 0] is degenerate.
            return max(float(hi[0]), 0.0) - min(float(lo[0]), 0.0) < min_range

        def upstream_range(t, seen):
            op = producer.get(t)
            if op is None:
                return None
            inputs = [op.Inputs(j) for j in range(op.InputsLength())]
            inputs = [i for i in inputs if i in stats and i not in seen]
            for i in inputs:  # a live input first
                if not degenerate(i):
                    return float(stats[i][0][0]), float(stats[i][1][0])
            for i in inputs:  # then through degenerate ones
                seen.add(i)
                found = upstream_range(i, seen)
                if found is not None:
                    return found
            return None

        bad = [t for t in stats if degenerate(t)]
        new_ranges = {t: upstream_range(t, {t}) or fallback for t in bad}
        for t, (lo, hi) in new_ranges.items():
            stats[t][0][0] = min(lo, 0.0)
            stats[t][1][0] = max(hi, 0.0)
            widened.append(subgraph.Tensors(t).Name().decode())
    return bytes(buf), widened


def _calibrate_and_quantize(converter):
    """converter.convert() for full-integer int8, with degenerate ranges widened.

    The same two steps TFLiteConverter takes with its MLIR quantizer (calibrate, then
    mlir_quantize with float input and output), split so that the calibration statistics
    can be checked in between.
    """
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    calibrated, _ = widen_degenerate_ranges(calibrated)
    return tflite_convert.mlir_quantize(
        calibrated,
        disable_per_channel=converter._experimental_disable_per_channel,
        disable_per_channel_for_dense_layers=(
            converter._experimental_disable_per_channel_quantization_for_dense_layers))


def export_tflite(model, path, quantize=None, representative_dataset=None, batch_size=1,
                  input_dtype="float32", max_calibration_clips=100, integer_only=True):
    """Writes `model` as a .tflite file with builtin ops only.

    Args:
        model: a keras_tin model with static (frames, H, W, 3) input. A model built
            under mixed precision is exported as its float32 copy (see float32_model).
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
