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

Overflowing activations. A float model that overflows on a calibration clip (inf or NaN
somewhere in the graph) records calibrated ranges that are inf or saturated at float32's
largest value (3.4e38); the MLIR quantizer then fails with "scale out of expressed type
range [1.401298e-45, 3.402823e+38]" and writes a file whose outputs are constant, or
aborts the process. `check_finite_ranges` refuses such statistics with a ValueError that
names the first tensors affected; the model, not the converter, is at fault (run it on
the representative clips: some outputs are inf, NaN or huge).

Integer I/O (`input_dtype` / `output_dtype` "int8" or "uint8", with quantize="int8"): the
clip input and the output are quantized tensors, so an int8-only runtime (an NPU, a
microcontroller) needs no float at the edges. The input's range is fixed to [0, 255]
when the model normalises inside (every keras_tin model unless built with
normalization=None), so a "uint8" input has scale 1 and zero point 0: it takes the raw
RGB bytes of the frames, and an "int8" input takes byte - 128 (scale 1, zero point -128).
The output keeps its calibrated scale and zero point (`TFLiteModel` dequantizes with them).

What stays float in an int8 file. Listed with `op_names(path, delegate=False)` (the ops
the file holds, before XNNPACK takes some over), for a TIN-ResNet-18 and a TSM-ResNet-18
(4 frames, 32 px, base_filters=16) exported with input_dtype="uint8", output_dtype="int8":
- TSM-R18: ADD, CONCATENATION, CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, MEAN, MUL, PAD,
  QUANTIZE, RESHAPE, STRIDED_SLICE, SUB: all int8 (QUANTIZE here requantizes the uint8
  input to int8), no float tensor at all.
- TIN-R18: the same int8 ops plus BATCH_MATMUL, LOGISTIC and TRANSPOSE (int8), and per TIN
  module one float island around the OffsetNet's offsets (2 numbers per clip, mirrored
  to 4): DEQUANTIZE (int8 offsets -> float), NEG and CONCATENATION (the mirrored groups,
  float), FLOOR, CAST (float k -> int32), 2 EQUAL and an ADD on int32 (the lag masks
  t - s == k, k + 1), 2 CAST (bool masks -> float32), 4 QUANTIZE (offsets, k, the two
  masks -> int8) and a second DEQUANTIZE (k, which the quantizer routes through int8
  between FLOOR and the int32 CAST). Per file: 2n DEQUANTIZE, n NEG, n CONCATENATION,
  n FLOOR, 3n CAST, 4n QUANTIZE for n TIN modules (n = 8 in a ResNet-18). Why: TFLite has
  no int8 FLOOR kernel, and the shift k must be an exact integer for the int32 mask
  comparison (a float equality on quantized values silently misses, see
  keras_tin.ops.portable), so the quantizer leaves this arithmetic in float. The tensors
  are 4 offsets and two 4 x T x T masks per clip, not feature maps: every backbone
  activation (convolutions, the interlace's BATCH_MATMUL, the fc) is int8. An int8-only
  accelerator runs these few small ops on the CPU. (k's int8 round trip is exact only
  because its calibrated range is [-1, 0] or [-2, 1], widths that divide 255: offsets
  are bounded by +-2 and mirrored. The CAST truncates, so a dequantized 0.99999994 would
  become 0; measured values were -1.00000006 and 1.00000002. Rounding k before the cast
  in keras_tin.ops.portable would remove that dependence.)
With the default input_dtype="float32" / output_dtype="float32" the file also starts with
a QUANTIZE (float32 -> int8) and ends with a DEQUANTIZE.
"""

import os
import tempfile

from keras_tin.export import calibration
from keras_tin.export.serving import clip_shape
from keras_tin.export.serving import write_archive

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
TFLITE_INPUT_DTYPES = ("float32", "uint8", "int8")
OUTPUT_DTYPES = ("float32", "uint8", "int8")


def _check_io(quantize, input_dtype, output_dtype):
    if input_dtype not in TFLITE_INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {TFLITE_INPUT_DTYPES}. "
                         f"Received: input_dtype={input_dtype!r}")
    if output_dtype not in OUTPUT_DTYPES:
        raise ValueError(f"output_dtype must be one of {OUTPUT_DTYPES}. "
                         f"Received: output_dtype={output_dtype!r}")
    if quantize != "int8" and (input_dtype == "int8" or output_dtype != "float32"):
        raise ValueError(
            "Quantized (int8/uint8) outputs and int8 inputs need quantize='int8'. "
            f"Received: quantize={quantize!r}, input_dtype={input_dtype!r}, "
            f"output_dtype={output_dtype!r}")


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
                   input_dtype="float32", max_calibration_clips=100, integer_only=True,
                   output_dtype="float32", class_names=None, metadata=True, verbose=False):
    """Converts `model` to a TFLite flatbuffer (bytes); see `export_tflite`."""
    import tensorflow as tf

    from keras_tin.export import metadata as metadata_lib
    from keras_tin.export.serving import check_backend

    check_backend()
    _check(quantize, representative_dataset)
    _check_io(quantize, input_dtype, output_dtype)
    model = float32_model(model)
    clip_shape(model)  # one static 5-D clip input, else a clear ValueError
    record = None
    if metadata:  # before converting: a wrong label count fails fast
        record = metadata_lib.model_metadata(
            model, class_names, input_dtype=input_dtype, output_dtype=output_dtype,
            batch_size=batch_size, quantize=quantize)
    integer_io = quantize == "int8" and input_dtype in ("uint8", "int8")
    # Integer I/O: the quantizer makes the input a quantized uint8/int8 tensor itself, so
    # the graph takes float32 (no CAST); otherwise uint8 clips are cast in the graph.
    traced_dtype = "float32" if integer_io else input_dtype
    with tempfile.TemporaryDirectory() as tmp:
        write_archive(model, tmp, batch_size=batch_size, input_dtype=traced_dtype)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            expected = metadata_lib.expected_input_range(model)
            normalization = (metadata_lib.normalization_of(model) or {}).get("name")
            shape = clip_shape(model)
            calibration.peek_range(representative_dataset, shape, expected,
                                   normalization=normalization)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration.representative_dataset(
                representative_dataset, shape, max_calibration_clips, traced_dtype,
                expected_range=expected, verbose=verbose, normalization=normalization)
            if integer_only:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            input_range = expected if integer_io else None
            data = _calibrate_and_quantize(converter, input_dtype if integer_io else "float32",
                                           output_dtype, input_range)
        if quantize != "int8":
            data = converter.convert()
    if record is not None:
        record.update(io_quantization(data))
        data = metadata_lib.add_tflite_metadata(data, record)
    return data


def io_quantization(flatbuffer):
    """{"input_quantization": [scale, zero_point] or None, "output_quantization": ...} of
    the first input and output of a .tflite flatbuffer (None for float tensors)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(flatbuffer), 0)
    subgraph = model.Subgraphs(0)

    def params(index):
        q = subgraph.Tensors(index).Quantization()
        if q is None or not q.ScaleLength():
            return None
        return [float(q.Scale(0)), int(q.ZeroPoint(0))]

    return {"input_quantization": params(subgraph.Inputs(0)),
            "output_quantization": params(subgraph.Outputs(0))}


def set_input_range(calibrated, low, high):
    """Sets the calibrated min/max of every model input of `calibrated` to [low, high].

    Used for integer inputs of a model that takes 0-255 RGB: [0, 255] gives the uint8
    input scale 1 and zero point 0 (the raw bytes), whatever the calibration clips' range.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    buf = bytearray(calibrated)
    model = schema.Model.GetRootAs(buf, 0)
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for i in range(subgraph.InputsLength()):
            q = subgraph.Tensors(subgraph.Inputs(i)).Quantization()
            if q is None or q.MinLength() != 1 or q.MaxLength() != 1:
                raise ValueError("The calibrated model has no statistics for its input.")
            q.MinAsNumpy()[0] = low
            q.MaxAsNumpy()[0] = high
    return bytes(buf)


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


def overflowed_ranges(calibrated):
    """Names of the tensors of a calibrated .tflite flatbuffer whose recorded min or max
    is inf, NaN or at float32's largest magnitude (where the calibrator saturates an
    overflow), in graph order."""
    import math

    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema

    limit = float(np.finfo(np.float32).max)
    model = schema.Model.GetRootAs(bytearray(calibrated), 0)
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            q = subgraph.Tensors(t).Quantization()
            if q is None or q.ScaleLength():
                continue
            values = [q.Min(i) for i in range(q.MinLength())]
            values += [q.Max(i) for i in range(q.MaxLength())]
            if not all(math.isfinite(v) and abs(v) < limit for v in values):
                names.append(subgraph.Tensors(t).Name().decode())
    return names


def check_finite_ranges(calibrated, shown=3):
    """Raises ValueError when a calibrated activation range overflowed (inf, NaN or
    float32's largest value; see the module docstring): the float model overflowed on a
    representative clip."""
    bad = overflowed_ranges(calibrated)
    if bad:
        raise ValueError(
            f"int8 calibration recorded overflowed activation ranges (inf, NaN or 3.4e38) for "
            f"{len(bad)} tensors, first: {bad[:shown]}. The float model overflows on at "
            "least one representative clip (its outputs there are inf or NaN, or huge); "
            "full-integer quantization needs finite ranges. Check the model on those "
            "clips (BatchNorm statistics that do not match them, diverging weights).")


def _calibrate_and_quantize(converter, input_dtype="float32", output_dtype="float32",
                            input_range=None):
    """converter.convert() for full-integer int8, with degenerate ranges widened.

    The same two steps TFLiteConverter takes with its MLIR quantizer (calibrate, then
    mlir_quantize with the inference input and output types), split so that the
    calibration statistics can be checked (and the input range fixed) in between.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    check_finite_ranges(calibrated)
    calibrated, _ = widen_degenerate_ranges(calibrated)
    if input_range is not None:
        calibrated = set_input_range(calibrated, *input_range)
    return tflite_convert.mlir_quantize(
        calibrated,
        disable_per_channel=converter._experimental_disable_per_channel,
        input_data_type=tf.as_dtype(input_dtype),
        output_data_type=tf.as_dtype(output_dtype),
        disable_per_channel_for_dense_layers=(
            converter._experimental_disable_per_channel_quantization_for_dense_layers))


def export_tflite(model, path, quantize=None, representative_dataset=None, batch_size=1,
                  input_dtype="float32", max_calibration_clips=100, integer_only=True,
                  output_dtype="float32", class_names=None, metadata=True, verbose=False):
    """Writes `model` as a .tflite file with builtin ops only.

    Args:
        model: a keras_tin model with static (frames, H, W, 3) input. A model built
            under mixed precision is exported as its float32 copy (see float32_model).
        path: output .tflite file.
        quantize: None (float32), "float16" (fp16 weights, float compute), "dynamic"
            (int8 weights, float activations) or "int8" (full-integer: int8 weights and
            activations, calibrated on `representative_dataset`).
        representative_dataset: calibration clips for "int8", raw RGB on 0-255 (clips
            that look normalised are refused, see keras_tin.export.calibration, which
            also lists the accepted forms, including keras_tin.data.load_dataset's).
        batch_size: static batch of the input (1, what phones run); None for dynamic.
        input_dtype: "float32" (RGB on 0-255) or "uint8" (raw bytes); with "int8"
            quantization also "int8" (byte - 128). For "int8" quantization, "uint8" and
            "int8" make the input a quantized tensor (scale 1; see the module docstring);
            otherwise "uint8" bytes are cast to float in the graph.
        max_calibration_clips: clips used for int8 calibration.
        integer_only: for "int8", allow only int8 builtin kernels.
        output_dtype: "float32"; with "int8" quantization also "int8" or "uint8" (the
            output tensor quantized with its calibrated scale and zero point).
        class_names: one name per class, stored in the file's keras_tin metadata (see
            keras_tin.export.metadata; read back with keras_tin.export.read_metadata).
        metadata: False to write no keras_tin metadata entry.
        verbose: log int8 calibration progress (a line per tenth of the clips) to stderr.

    Returns:
        The file size in bytes.
    """
    data = convert_tflite(model, quantize, representative_dataset, batch_size, input_dtype,
                          max_calibration_clips, integer_only, output_dtype, class_names,
                          metadata, verbose)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)
