"""TCP (Temporal-attentive Covariance Pooling, TCPNet): the head's parts against NumPy / SciPy
(iSQRT with 3 Newton-Schulz iterations and its convergence to sqrtm, covariance, upper
triangle, autodiff gradients against finite differences), the head and whole networks
against an independent PyTorch TCPNet (weights/torch_reference_tcp.py, the release's key
names, both spellings) with random weights, non-zero BN statistics and the zero-initialised
TSA BN / temporal conv made non-zero; training, .keras, TFLite, JAX/PyTorch backends,
mixed precision (on a TCP-ResNet-18, the same head at half the build time), parameter counts
at full size (build only), the CLI and the manifest records."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402
import scipy.linalg  # noqa: E402

import torch_reference_tcp as ref  # noqa: E402
from export_helpers import clips  # noqa: E402
from export_helpers import recalibrate_batchnorm  # noqa: E402
from keras_tin import cli  # noqa: E402
from keras_tin.applications import TCPResNet50  # noqa: E402
from keras_tin.applications import TCPResNet152  # noqa: E402
from keras_tin.applications import TemporalResNet  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.export import TFLiteModel  # noqa: E402
from keras_tin.export import export_tflite  # noqa: E402
from keras_tin.layers import tcp  # noqa: E402
from keras_tin.weights import layouts_tcp  # noqa: E402
from keras_tin.weights import registry  # noqa: E402
from keras_tin.weights.convert import assign_state_dict  # noqa: E402

FRAMES, SIZE, CLASSES, WIDTH = 4, 32, 5, 16
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4


def to_torch(x):
    """(N, T, H, W, 3) 0-255 RGB -> normalised (N, T, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 1, 4, 2, 3)))


def state_dict(module):
    return {k: v.numpy() for k, v in ref.checkpoint(module)["state_dict"].items()}


def tolerance(expected):
    return TOL * max(1.0, float(np.abs(expected).max()))


# --- the matrix parts against NumPy / SciPy ---------------------------------------------

def spd(d, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, 3 * d))
    return a @ a.T / (3 * d) + 0.05 * np.eye(d)


def newton_schulz_np(s, iterations, eps=1e-5):
    """The iteration of ZOO_SPEC.md section 11 step 4, in float64."""
    i3 = 3.0 * np.eye(len(s))
    a_tr = np.trace(s)
    a = s / (a_tr + eps)
    zy = 0.5 * (i3 - a)
    if iterations < 2:
        return a @ zy * np.sqrt(a_tr)
    y, z = a @ zy, zy
    for _ in range(iterations - 2):
        zy = 0.5 * (i3 - z @ y)
        y, z = y @ zy, zy @ z
    return 0.5 * y @ (i3 - z @ y) * np.sqrt(a_tr)


def test_isqrt_is_the_3_step_newton_schulz_and_approaches_sqrtm():
    s = np.stack([spd(12, 0), spd(12, 1)])
    got = keras.ops.convert_to_numpy(tcp.NewtonSchulzSqrt()(s.astype("float32")))
    want = np.stack([newton_schulz_np(m, 3) for m in s])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    exact = scipy.linalg.sqrtm(s[0]).real
    # (without the 1e-5 added to the trace, which biases the result by ~eps / trace)
    errors = [np.abs(newton_schulz_np(s[0], n, eps=0.0) - exact).max()
              for n in (1, 3, 5, 8, 30)]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[1] > 1e-3  # 3 iterations are an approximation (the published choice)
    assert errors[-1] < 1e-8
    many = keras.ops.convert_to_numpy(tcp.NewtonSchulzSqrt(30, epsilon=0.0)(s[:1]))[0]
    np.testing.assert_allclose(many, exact, atol=1e-5)


def test_covariance_and_upper_triangle_against_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2 * 3, 4, 5, 7)).astype("float32")  # 2 clips of 3 frames
    cov = keras.ops.convert_to_numpy(tcp.CovariancePooling(3)(x))
    for n in range(2):
        positions = x[3 * n:3 * n + 3].reshape(-1, 7).astype(np.float64)
        np.testing.assert_allclose(cov[n], np.cov(positions.T, bias=True), atol=1e-5)
    tri = keras.ops.convert_to_numpy(tcp.UpperTriangle()(cov))
    rows, cols = np.triu_indices(7)
    np.testing.assert_array_equal(tri, cov[:, rows, cols])
    assert tcp.UpperTriangle().compute_output_shape((None, 128, 128)) == (None, 8256)


def test_head_gradients_match_finite_differences():
    """Autodiff through TSA, TCA, the circular conv, covariance, iSQRT and the triangle
    (float64 layers) against central differences."""
    import tensorflow as tf

    frames, d = 4, 5
    rng = np.random.default_rng(3)
    layers = dict(tsa=tcp.TemporalSpatialAttention(frames, dtype="float64"),
                  tca=tcp.TemporalChannelAttention(frames, dtype="float64"),
                  conv=tcp.CircularTemporalConv(frames, dtype="float64"),
                  cov=tcp.CovariancePooling(frames, dtype="float64"),
                  sqrtm=tcp.NewtonSchulzSqrt(dtype="float64"),
                  triu=tcp.UpperTriangle(dtype="float64"))
    x0 = rng.normal(size=(2 * frames, 3, 3, d))
    weights = rng.normal(size=(d * (d + 1) // 2,))

    def f(x):
        att = x + layers["tsa"](x)
        att = layers["tca"]([x, att])
        y = tf.nn.relu(layers["conv"](att) + x)
        out = layers["triu"](layers["sqrtm"](layers["cov"](y)))
        return tf.reduce_sum(out * weights)

    f(tf.constant(x0))
    for layer in layers.values():
        for v in layer.weights:
            v.assign(rng.normal(scale=0.5, size=v.shape))
    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = f(x)
    grad = tape.gradient(value, x).numpy()
    eps = 1e-6
    for flat in rng.choice(x0.size, 12, replace=False):
        idx = np.unravel_index(flat, x0.shape)
        plus, minus = x0.copy(), x0.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric = (f(tf.constant(plus)).numpy() - f(tf.constant(minus)).numpy()) / (2 * eps)
        assert abs(numeric - grad[idx]) <= 1e-6 + 1e-5 * abs(numeric), (idx, numeric, grad[idx])


# --- against the PyTorch reference ------------------------------------------------------

@pytest.mark.parametrize("frames", [8, 16])
def test_head_equals_reference_at_the_published_frame_counts(frames):
    """The head alone (T = 8: kernel 5, T = 16: kernel 9), narrow widths; the reference's
    TCP.* keys go through layouts_tcp."""
    d, inner, c, hw = 12, 16, 24, 3
    head = ref.TCP(c, frames, inner, d)
    net = torch.nn.Module()
    net.TCP = head
    ref.randomize(net, seed=frames)
    rng = np.random.default_rng(frames)
    x = rng.normal(size=(2 * frames, hw, hw, c)).astype("float32")
    inputs = keras.Input((hw, hw, c))
    model = keras.Model(inputs, tcp.tcp_head(frames, dim=d, inner_dim=inner)(inputs))
    canonical, _, _ = layouts_tcp.canonicalize(
        {"TCP." + k: v.numpy() for k, v in head.state_dict().items()})
    variables = {(layer.name, v.path.split("/")[-1]): v for layer in model.layers
                 for v in layer.weights}
    assigned = set()
    for key, value in canonical.items():
        if not key.startswith("tcp"):
            continue
        layer, var, axes = layouts_tcp.keras_target(key)
        variables[(layer, var)].assign(np.transpose(value, axes) if axes else value)
        assigned.add((layer, var))
    assert assigned == set(variables)
    with torch.no_grad():
        want = head(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = model(x).numpy()
    assert got.shape == (2, d * (d + 1) // 2)
    np.testing.assert_allclose(got, want, atol=tolerance(want), rtol=0)
    assert np.abs(want[0] - want[1]).max() > 100 * tolerance(want)


@pytest.fixture(scope="module")
def reference_r50():
    net = ref.TCPNet(CLASSES, 50, FRAMES, WIDTH)
    return ref.randomize(net, 0, calibrate_with=to_torch(clips(6, FRAMES, SIZE, seed=50)))


def small(builder=TCPResNet50, **kwargs):
    kwargs.setdefault("base_filters", WIDTH)
    return builder(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
                   classifier_activation=None, **kwargs)


@pytest.mark.parametrize("spelling", ["current", "old"])
def test_tcp_resnet50_equals_reference_for_both_key_spellings(spelling, reference_r50):
    sd = state_dict(reference_r50)
    if spelling == "old":
        sd = ref.old_style_keys(sd)
        assert any(".layer4.iSQRT.att_module.sp_att.conv_theta." in k for k in sd)
        assert "module.base_model.classifier.weight" in sd
    x = clips(3, FRAMES, SIZE, seed=9)
    with torch.no_grad():
        want = reference_r50(to_torch(x)).numpy()
    model = small()
    info = assign_state_dict(model, sd, verbose=False)
    assert info == {"layout": "tcpnet", "spelling": spelling, "form": "tcp",
                    "temporal": "tcp", "head_loaded": True}
    got = model(x).numpy()
    np.testing.assert_allclose(got, want, atol=tolerance(want), rtol=0)
    assert np.ptp(want, axis=0).max() > 100 * tolerance(want)  # the clips stay apart
    # the zero-initialised parts were non-zero in the reference and arrived
    assert np.abs(model.get_layer("tcp_conv_1d").kernel.numpy()).min() > 0
    assert np.abs(model.get_layer("tcp_tsa_bn").gamma.numpy()).min() > 0


def test_tcp_resnet152_preact_equals_reference():
    net = ref.TCPNet(CLASSES, 152, FRAMES, 8, backbone="preact")
    ref.randomize(net, 1, calibrate_with=to_torch(clips(4, FRAMES, SIZE, seed=51)))
    x = clips(2, FRAMES, SIZE, seed=10)
    with torch.no_grad():
        want = net(to_torch(x)).numpy()
    model = small(TCPResNet152, base_filters=8)
    assert model.get_layer("bn_data").epsilon == 2e-5
    assign_state_dict(model, ref.old_style_keys(state_dict(net)), verbose=False)
    np.testing.assert_allclose(model(x).numpy(), want, atol=tolerance(want), rtol=0)
    # a pre-activation backbone offered to a post-activation build is refused, saying why
    preact50 = ref.TCPNet(CLASSES, 50, FRAMES, 8, backbone="preact")
    with pytest.raises(ValueError, match="block='preact'"):
        assign_state_dict(small(base_filters=8), state_dict(preact50), verbose=False)


def test_refusals_quote_the_problem(reference_r50):
    with pytest.raises(ValueError, match=r"frames must be 4k or 4k\+1.*frames=6"):
        TCPResNet50(frames=6, input_shape=(6, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match=r"pooling must be None.*pooling='avg'"):
        TemporalResNet("tcp", 50, frames=FRAMES, include_top=False, pooling="avg")
    tsn = TemporalResNet("tsn", 50, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                         classes=CLASSES, base_filters=WIDTH)
    with pytest.raises(ValueError, match="without the TCP head.*tcp_resnet50"):
        assign_state_dict(tsn, state_dict(reference_r50), verbose=False)
    eight = state_dict(ref.TCPNet(CLASSES, 50, 8, WIDTH))  # temporal kernel 5, not 3
    with pytest.raises(ValueError, match="trained with 8 .*build it with frames=8"):
        assign_state_dict(small(), eight, verbose=False)


def test_pooling_tcp_on_tsm_and_backbone_initialisation(reference_r50):
    """pooling='tcp' puts the head (layer4 stride 1) on another kind: TSM + TCP; a plain
    ResNet backbone state dict loads with the head kept at its initialisation."""
    model = small(lambda **kw: TemporalResNet("tsm", 50, pooling="tcp", **kw))
    assert model.get_layer("layer4_0_conv2").strides == 1
    assert any("_tsm" in layer.name for layer in model._flatten_layers())
    features = TemporalResNet("tsm", 50, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                              include_top=False, pooling="tcp", base_filters=WIDTH)
    assert features.output_shape == (None, 8256)
    backbone = {k.replace("module.base_model.", ""): v for k, v in state_dict(reference_r50).items()
                if ".TCP." not in k and "new_fc" not in k}
    plain = small()
    info = assign_state_dict(plain, backbone, verbose=False)
    assert info["form"] == "backbone" and info["head_loaded"] is False
    np.testing.assert_array_equal(plain.get_layer("conv1").kernel.numpy(),
                                  backbone["conv1.weight"].transpose(2, 3, 1, 0))


# --- what every zoo model must do -------------------------------------------------------
# On TCP-ResNet-18 (TemporalResNet("tcp", 18): the same head on 512 channels), which builds
# and compiles in half the time of the ResNet-50; the ResNet-50 and -152 are checked above.

def small18(**kwargs):
    return small(lambda **kw: TemporalResNet("tcp", 18, **kw), **kwargs)


@pytest.fixture(scope="module")
def trained_like():
    keras.utils.set_random_seed(0)
    model = small18()
    rng = np.random.default_rng(5)
    for v in model.weights:
        if "moving_variance" not in v.path:
            value = keras.ops.convert_to_numpy(v)
            v.assign(value + rng.normal(0.0, 0.05, value.shape).astype(value.dtype))
    return recalibrate_batchnorm(model, clips(16, FRAMES, SIZE, seed=100))


def test_fit_one_step_and_keras_round_trip(trained_like, tmp_path):
    model = small18()
    model.set_weights(trained_like.get_weights())
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = clips(2, FRAMES, SIZE, seed=1)
    # phi_0's bias shifts every attention output equally (softmax rows sum to 1), which
    # the following BatchNormalization's batch mean removes in training: no gradient.
    weights = [v for v in model.trainable_weights if v.path != "tcp_tsa/phi_0_bias"]
    before = [v.numpy().copy() for v in weights]
    history = model.fit(x, np.array([0, 3]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, weights) if np.array_equal(b, v.numpy())]
    assert not static, static
    assert model.get_layer("layer4_0_conv1").strides == 1  # TCPNet's layer4 stride
    path = str(tmp_path / "tcp.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_tflite_float_equals_keras(trained_like, tmp_path):
    x = clips(2, FRAMES, SIZE, seed=7)
    expected = trained_like(x, training=False).numpy()
    path = str(tmp_path / "tcp.tflite")
    export_tflite(trained_like, path)  # builtin ops only
    got = np.concatenate([TFLiteModel(path)(clip[None]) for clip in x])
    np.testing.assert_allclose(got, expected, atol=tolerance(expected), rtol=0)


BACKEND_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras
    from keras_tin.layers import tcp
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    weights, x_path, out = sys.argv[1:4]
    inputs = keras.Input((3, 3, 24))
    head = keras.Model(inputs, tcp.tcp_head(8, dim=12, inner_dim=16)(inputs))
    head.load_weights(weights)
    x = np.load(x_path)
    np.save(out, head.predict(x, batch_size=len(x), verbose=0))  # one compiled call
    print("OK")
""")


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_head_on_jax_and_torch_backends(backend, tmp_path):
    """The TCP head's ops (softmax attention, circular conv, covariance, iSQRT, gather) on
    the JAX and PyTorch backends: the same features as TensorFlow (the backbone's layers are
    checked on those backends by test_zoo_models.py)."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((3, 3, 24))
    head = keras.Model(inputs, tcp.tcp_head(8, dim=12, inner_dim=16)(inputs))
    rng = np.random.default_rng(4)
    for v in head.weights:
        if "moving_variance" not in v.path:
            v.assign(v.numpy() + rng.normal(0.0, 0.3, v.shape).astype("float32"))
    x = rng.normal(size=(2 * 8, 3, 3, 24)).astype("float32")
    expected = head(x, training=False).numpy()
    head.save_weights(str(tmp_path / "w.weights.h5"))
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "check.py").write_text(BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(tmp_path / "check.py"),
                           str(tmp_path / "w.weights.h5"), str(tmp_path / "x.npy"),
                           str(tmp_path / "out.npy")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected,
                               atol=tolerance(expected), rtol=0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_runs_the_head_in_float32(policy, trained_like):
    """Under a mixed policy the backbone computes in float16 / bfloat16 and the head and
    classifier in float32: the head turns the low-precision features into the same logits
    as the float32 model's head on those features (to float32 precision), and the logits
    are finite. The whole model differs from the float32 one by what the backbone's
    low-precision features carry (a tiny random ResNet amplifies them), so that difference
    is only bounded loosely."""
    x = clips(2, FRAMES, SIZE, seed=7)
    expected = trained_like(x, training=False).numpy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = small18()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("layer1_0_conv1").compute_dtype != "float32"
    for layer in model.layers:
        if layer.name.startswith("tcp_") or layer.name in ("fc", "predictions"):
            assert layer.dtype_policy.name == "float32", layer.name
    model.set_weights(trained_like.get_weights())
    got = keras.ops.convert_to_numpy(model(x, training=False))
    assert got.dtype == np.float32 and np.isfinite(got).all()
    features = keras.Model(model.input, model.get_layer("layer4_1_out").output)(x)
    assert keras.backend.standardize_dtype(features.dtype) == policy.split("_")[1]
    head = keras.Model(trained_like.get_layer("tcp_reduce1").input, trained_like.output)
    same_features = head(keras.ops.cast(features, "float32")).numpy()
    np.testing.assert_allclose(got, same_features, atol=tolerance(same_features), rtol=0)
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() < (0.5 if policy == "mixed_float16" else 2.0) * scale


# --- full size: parameter counts (build only), CLI, records -----------------------------

def test_full_size_parameters_and_convert_cli(tmp_path, capsys):
    """TCPResNet50 at 224 px, 8 frames, 400 classes has the reference's parameter count
    (and the spec's 821,376 head parameters); `keras-tin convert --arch tcp_resnet50`
    converts the reference's full-size checkpoint."""
    net = ref.TCPNet(400, 50, 8)
    torch_params = sum(p.numel() for p in net.parameters())
    head = sum(p.numel() for p in net.base_model.TCP.parameters())
    assert head == 821_376
    path = tmp_path / "tcp.pth"
    torch.save({"epoch": 1, "state_dict": ref.old_style_keys(ref.checkpoint(net)["state_dict"])},
               str(path))
    out = tmp_path / "tcp.weights.h5"
    assert cli.main(["convert", str(path), str(out), "--arch", "tcp_resnet50"]) == 0
    printed = capsys.readouterr().out
    # the converted Keras model: the reference's parameters plus its BN running statistics
    bn_statistics = sum(b.numel() for name, b in net.named_buffers()
                        if name.endswith(("running_mean", "running_var")))
    assert f"(tcp_resnet50, {torch_params + bn_statistics:,} parameters)" in printed, printed
    assert out.stat().st_size > 4 * torch_params


def test_train_cli_selects_tcp_resnets(tmp_path, capsys):
    """`keras-tin train --arch tcp_resnet18` (tcp_resnetDEPTH parses for every depth; the
    ResNet-18 keeps the test short; tcp_resnet50 goes the same way, see test_architectures)."""
    import training_layouts

    videos = training_layouts.three_class_videos(str(tmp_path / "videos"))
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "folder", "--root", videos, "--output-dir", str(out),
                     "--arch", "tcp_resnet18", "--base-filters", "16", "--image-size", "32",
                     "--frames", "4", "--epochs", "1", "--batch-size", "2", "--val-split", "",
                     "--verbose", "0"])
    assert code == 0, capsys.readouterr()
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.name == "tcp_resnet18" and model.get_layer("tcp_sqrtm") is not None
    assert json.loads((out / "config.json").read_text())["arch"] == "tcp_resnet18"
    from keras_tin.training import TrainConfig
    config = TrainConfig(arch="tcp_resnet50")
    assert (config.temporal, config.depth) == ("tcp", 50)
    assert TrainConfig(arch="tcp_resnet152").depth == 152


def test_manifest_records_need_a_manual_download(tmp_path):
    names = {"tcp_resnet50_8f_kinetics400_tcpnet": (8, 75.3),
             "tcp_resnet50_16f_kinetics400_tcpnet": (16, 75.8),
             "tcp_resnet152_8f_kinetics400_tcpnet": (8, 78.3),
             "tcp_resnet152_16f_kinetics400_tcpnet": (16, 79.3)}
    for name, (frames, top1) in names.items():
        record = registry.get_record(name)
        assert (record["frames"], record["top1"], record["layout"]) == (frames, top1, "tcpnet")
        assert record["url"] is None and record["download"] == "manual"
        assert record["download_page"].startswith("https://drive.google.com/file/d/")
        assert "ZilinGao" in record["source"]
    with pytest.raises(registry.ManualDownloadError, match="drive.google.com"):
        registry.download("tcp_resnet50_8f_kinetics400_tcpnet", cache_dir=str(tmp_path))
