"""pytorchvideo's bottleneck R(2+1)D-50 and the P3D ResNets (keras_tin.applications.video3d
r2plus1d_r50.py, p3d.py): parity with independent PyTorch references written from the spec
in the publishers' key names (weights/torch_reference_pytorchvideo.py, torch_reference_p3d.py;
random weights, non-zero BatchNorm statistics), conversion of a pytorchvideo .pyth
(PySlowFast container, weights under model_state), the unverified manifest record, the full
parameter counts, refusals, and what every zoo model must do (fit, .keras, JAX backend,
TFLite float / int8)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402

import torch_reference_p3d as trp  # noqa: E402
import torch_reference_pytorchvideo as trv  # noqa: E402
from export_helpers import clips  # noqa: E402
from export_helpers import recalibrate_batchnorm  # noqa: E402
from keras_tin import architectures  # noqa: E402
from keras_tin.applications import P3D63  # noqa: E402
from keras_tin.applications import P3D199  # noqa: E402
from keras_tin.applications import P3DResNet  # noqa: E402
from keras_tin.applications import R2Plus1DResNet  # noqa: E402
from keras_tin.applications import R2Plus1DResNet50  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.export import TFLiteModel  # noqa: E402
from keras_tin.export import export_tflite  # noqa: E402
from keras_tin.layers import SeparableMaxPooling3D  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import convert  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

RECORD = "r2plus1d_r50_16x4_kinetics400_pytorchvideo"
MEAN, STD = 114.75, 57.375  # pytorchvideo's 0.45 / 0.225 on 0-255
WIDTH = 8


def tolerance(expected):
    """1e-4, relative to the logits' scale where it exceeds 1 (float32 keeps ~7 digits)."""
    return 1e-4 * max(1.0, float(np.abs(expected).max()))


def rgb(n, frames, size, seed):
    return np.random.default_rng(seed).uniform(0, 255, (n, frames, size, size, 3)).astype(
        np.float32)


def torch_logits(ref, x):
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3)))).numpy()


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def pyth_container(ref):
    """What PySlowFast's save_checkpoint writes (the .pyth files of the pytorchvideo zoo)."""
    state = ref.state_dict()
    return {"epoch": 196, "model_state": state,
            "optimizer_state": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                                "param_groups": [{"lr": 0.1, "params": [0]}]},
            "cfg": "MODEL:\n  ARCH: r2plus1d\n  MODEL_NAME: PTVResNet\n"}


# --- R(2+1)D-50 -------------------------------------------------------------------------

def test_pyth_checkpoint_converts_and_matches_pytorch(tmp_path):
    """A pytorchvideo .pyth, read by the safe reader, loads into R2Plus1DResNet with logits
    equal to the reference's: 16 frames so every temporal stride acts (16 -> 8 -> 4), and a
    head pool of (2, 1, 1) over the 4 x 2 x 2 last map (several positions averaged)."""
    ref = trv.randomize(trv.R2Plus1D(50, classes=400, base_filters=WIDTH, head_pool=(2, 1, 1)),
                        seed=1)
    path = tmp_path / "R2PLUS1D_16x4_R50.pyth"
    torch.save(pyth_container(ref), str(path))
    model = R2Plus1DResNet(50, frames=16, input_shape=(16, 64, 64, 3), base_filters=WIDTH,
                           head_pool_size=(2, 1, 1), classifier_activation=None,
                           weights=str(path))
    x = rgb(2, 16, 64, seed=0)
    expected = torch_logits(ref, (x - MEAN) / STD)  # default normalisation: 0.45 / 0.225
    got = model(x, training=False).numpy()
    assert np.ptp(expected) > 1.0  # the logits of the two clips are not constant
    np.testing.assert_allclose(got, expected, atol=tolerance(expected), rtol=0)

    # The manifest record: no published hash, so the cached file is refused until the user
    # opts in; then it loads the same weights.
    cached = tmp_path / "cache" / registry.CACHE_SUBDIR / "R2PLUS1D_16x4_R50.pyth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    fresh = R2Plus1DResNet(50, frames=16, input_shape=(16, 64, 64, 3), base_filters=WIDTH,
                           head_pool_size=(2, 1, 1), classifier_activation=None)
    with pytest.raises(ValueError, match="no published hash"):
        load_weights(fresh, RECORD, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match="unverified"):
        load_weights(fresh, RECORD, cache_dir=str(tmp_path / "cache"), allow_unverified=True,
                     verbose=False)
    np.testing.assert_allclose(fresh(x, training=False).numpy(), expected,
                               atol=tolerance(expected), rtol=0)


def test_manifest_record():
    record = registry.get_record(RECORD)
    assert record["architecture"] == "r2plus1d_r50"
    assert architectures.parse("r2plus1d_r50").standalone
    from keras_tin.training import TrainConfig  # dense clips of consecutive frames, as trained
    assert {TrainConfig(arch=a).sampling for a in ("r2plus1d_r50", "p3d63", "p3d199")} == {
        "dense"}
    assert record["url"].endswith("/pytorchvideo/model_zoo/kinetics/R2PLUS1D_16x4_R50.pyth")
    assert (record["top1"], record["top5"], record["frames"], record["classes"]) == (
        76.01, 92.23, 16, 400)
    assert record["sha256"] is None and record["sha256_prefix"] is None
    assert record["verified_by_us"] is False and record["layout"] == "pytorchvideo"
    assert record["normalization"] == "tadaconv" and record["mean"] == [MEAN] * 3


def test_full_size_parameter_counts_equal_the_references():
    """pytorchvideo's model zoo lists 28.11 M parameters for R(2+1)D-50; the reference
    counts 28,107,600. Build only (no forward)."""
    ref_count = sum(p.numel() for p in trv.R2Plus1D(50).parameters())
    assert ref_count == 28_107_600 and round(ref_count / 1e6, 2) == 28.11
    model = R2Plus1DResNet50()
    assert trainable_count(model) == ref_count
    assert model.input_shape == (None, 16, 224, 224, 3) and model.output_shape == (None, 400)
    # P3D-131 / 199 are the same code with deeper stages (building them here costs 20 s).
    expected = sum(p.numel() for p in trp.P3D(63).parameters())
    p3d = P3D63()
    assert trainable_count(p3d) == expected == 25_745_232
    assert p3d.input_shape == (None, 16, 160, 160, 3)
    # MACs per clip (convs + fc) as counted on the PyTorch references with forward hooks
    # (benchmarks/bench_video3d_r50_p3d.py torch_macs): 57.53 G at 16x224x224, 8.44 G at
    # 16x160x160.
    assert flops(model) == 57_533_825_024 and flops(p3d) == 8_441_856_000
    assert sum(p.numel() for p in trp.P3D(199).parameters()) == 66_492_240


def test_checkpoints_of_the_other_family_are_refused(tmp_path):
    r50 = R2Plus1DResNet(50, frames=16, input_shape=(16, 32, 32, 3), base_filters=WIDTH)
    p3d = P3DResNet(63, input_shape=(16, 32, 32, 3), base_filters=WIDTH)
    pv = {k: v.numpy() for k, v in trv.R2Plus1D(50, base_filters=WIDTH).state_dict().items()}
    other = {k: v.numpy() for k, v in trp.P3D(63, base_filters=WIDTH).state_dict().items()}
    assert convert.head_classes(pv) == 400  # keras-tin convert sizes the classifier from it
    with pytest.raises(ValueError, match="pytorchvideo's R\\(2\\+1\\)D.*Nothing was loaded"):
        convert.assign_state_dict(p3d, pv)
    with pytest.raises(ValueError, match="not in pytorchvideo's R\\(2\\+1\\)D layout"):
        convert.assign_state_dict(r50, other)
    # A pytorchvideo checkpoint with a key missing: listed, nothing assigned.
    before = [v.numpy().copy() for v in r50.weights]
    broken = dict(pv)
    del broken["blocks.2.res_blocks.1.branch2.conv_b.conv_t.weight"]
    with pytest.raises(ValueError, match="res3_1_conv_t/kernel"):
        convert.assign_state_dict(r50, broken)
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, r50.weights))


def test_seed_makes_builds_identical_and_layers_differ():
    def build(seed):
        return R2Plus1DResNet(50, frames=4, input_shape=(4, 32, 32, 3), base_filters=WIDTH,
                              classes=3, seed=seed)

    first, second = build(3), build(3)
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    kernel = first.get_layer("res2_1_conv_a").kernel.numpy()  # same shape, another seed
    assert not np.array_equal(kernel, first.get_layer("res2_2_conv_a").kernel.numpy())
    with pytest.raises(ValueError, match="seed='3'"):
        build("3")


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(ValueError, match="depth=34"):
        R2Plus1DResNet(34)
    with pytest.raises(ValueError, match=r"head_pool_size=\(4, 7\)"):
        R2Plus1DResNet50(head_pool_size=(4, 7))
    with pytest.raises(ValueError, match="pooling='mean'"):
        R2Plus1DResNet50(include_top=False, pooling="mean")


# --- P3D ----------------------------------------------------------------------------------

P3D_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
          "running_var": "moving_variance"}


def copy_p3d(ref, model):
    """Test-side mapping of the port's names (layer1.0.conv2, downsample.0, fc) onto the
    Keras layers (layer1_0_conv2, layer1_0_downsample_conv, fc); every variable covered."""
    covered = set()
    for key, value in ref.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        module, param = key.rsplit(".", 1)
        name = (module.replace("downsample.0", "downsample_conv")
                .replace("downsample.1", "downsample_bn").replace(".", "_"))
        layer, value = model.get_layer(name), value.numpy()
        if isinstance(layer, keras.layers.BatchNormalization):
            variable = getattr(layer, P3D_BN[param])
        elif isinstance(layer, keras.layers.Dense):
            variable, value = (layer.kernel, value.T) if param == "weight" else (layer.bias,
                                                                                 value)
        else:
            value = value[:, :, None] if value.ndim == 4 else value  # res5 Conv2d
            variable, value = layer.kernel, value.transpose(2, 3, 4, 1, 0)
        variable.assign(value)
        covered.add(variable.path)
    assert covered == {v.path for v in model.weights}


def test_p3d_matches_the_reference_block_types_and_pools():
    """P3D-63 (blocks A, B, C, A, ... over res2-res4, 2-D res5), 16 frames halved to 1."""
    ref = trv.randomize(trp.P3D(63, classes=5, base_filters=WIDTH, head_pool=(1, 1)), seed=2)
    model = P3DResNet(63, input_shape=(16, 32, 32, 3), classes=5, base_filters=WIDTH,
                      classifier_activation=None, normalization=None)
    copy_p3d(ref, model)
    kinds = [ref.layer1[0].kind, ref.layer1[1].kind, ref.layer1[2].kind, ref.layer2[0].kind]
    assert kinds == ["A", "B", "C", "A"]
    x = np.random.default_rng(3).normal(size=(2, 16, 32, 32, 3)).astype(np.float32)
    expected = torch_logits(ref, x)
    np.testing.assert_allclose(model(x, training=False).numpy(), expected,
                               atol=tolerance(expected), rtol=0)
    assert model.get_layer("layer3_maxpool").output.shape[1] == 1  # one frame for res5


@pytest.mark.parametrize("pool,strides", [((2, 3, 3), (2, 2, 2)), ((2, 1, 1), (2, 1, 1)),
                                          ((1, 3, 3), (1, 2, 2))])
def test_separable_max_pooling_equals_max_pooling_3d(pool, strides):
    """P3D's pools as TFLite builtins (2-D pool per frame, then a temporal max)."""
    x = np.random.default_rng(4).normal(size=(2, 17, 9, 11, 4)).astype(np.float32)
    expected = keras.layers.MaxPooling3D(pool, strides)(x).numpy()
    np.testing.assert_array_equal(SeparableMaxPooling3D(pool, strides)(x).numpy(), expected)
    with pytest.raises(ValueError, match=r"pool_size=\(3, 3, 3\), strides=\(2, 2, 2\)"):
        SeparableMaxPooling3D(3, 2)


def test_p3d_is_architecture_only():
    for weights in ("p3d_rgb_199.checkpoint.pth.tar", RECORD, "imagenet"):
        with pytest.raises(ValueError, match="architecture-only.*Caffe") as info:
            P3D199(weights=weights)
        assert repr(weights) in str(info.value)
    with pytest.raises(ValueError, match="at least 16 frames.*frames=8"):
        P3D63(frames=8)
    with pytest.raises(ValueError, match="depth=50"):
        P3DResNet(50)


# --- What every zoo model does ------------------------------------------------------------

# R(2+1)D: 16 frames leave a 4 x 1 x 1 map, where a (2, 1, 1) head pool weights the frames
# 1:2:2:1 (the windowed head pooling, not a plain global average).
TINY = {"r2plus1d_r50": dict(frames=16, size=32, extra={"head_pool_size": [2, 1, 1]}),
        "p3d63": dict(frames=16, size=32, extra={})}


def tiny(arch, **kwargs):
    keras.utils.set_random_seed(0)
    spec = TINY[arch]
    model = build_for_architecture(arch, frames=spec["frames"],
                                   input_shape=(spec["frames"], spec["size"], spec["size"], 3),
                                   classes=3, base_filters=WIDTH, **spec["extra"], **kwargs)
    return recalibrate_batchnorm(model, clips(8, spec["frames"], spec["size"], seed=100))


@pytest.fixture(scope="module")
def models():
    built = {arch: tiny(arch, classifier_activation=None) for arch in TINY}
    assert type(built["r2plus1d_r50"].get_layer("avg_pool")).__name__ == (
        "WindowedGlobalAveragePooling3D")
    return built


@pytest.mark.parametrize("arch", sorted(TINY))
def test_fit_then_keras_file_round_trip(arch, tmp_path):
    model = tiny(arch)
    # run_eagerly: one step of a tiny model is cheaper than tracing it (XLA: ~50 s).
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy",
                  run_eagerly=True)
    x = clips(2, TINY[arch]["frames"], TINY[arch]["size"], seed=1)
    before = [v.numpy().copy() for v in model.trainable_weights]
    history = model.fit(x, np.array([0, 2]), batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, model.trainable_weights)
              if np.array_equal(b, v.numpy())]
    assert not static, static
    path = str(tmp_path / f"{arch}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded(x, training=False).numpy(),
                               model(x, training=False).numpy(), atol=1e-6)


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from keras.src.initializers import random_initializers
    from keras_tin.applications.records import build_for_architecture
    assert keras.backend.backend() == "jax"
    # The weights are loaded below: skip drawing random kernels (on JAX each new kernel
    # shape compiles a sampler, ~1 s each on this CPU).
    for cls in (random_initializers.VarianceScaling, random_initializers.RandomNormal):
        cls.__call__ = lambda self, shape, dtype=None: np.zeros(shape, "float32")
    for job in json.loads(sys.argv[1]):
        model = build_for_architecture(job["arch"], frames=job["frames"],
                                       input_shape=tuple(job["shape"]), classes=3,
                                       base_filters=job["width"], classifier_activation=None,
                                       **job["extra"])
        model.load_weights(job["weights"])
        np.save(job["out"], model.predict(np.load(job["clips"]), verbose=0))  # jitted
    print("OK")
""")


def test_jax_backend_gives_the_same_outputs(models, tmp_path):
    jobs, inputs = [], {}
    for arch, model in models.items():
        spec = TINY[arch]
        inputs[arch] = clips(2, spec["frames"], spec["size"], seed=7)
        np.save(tmp_path / f"{arch}_clips.npy", inputs[arch])
        model.save_weights(str(tmp_path / f"{arch}.weights.h5"))
        jobs.append(dict(arch=arch, frames=spec["frames"], width=WIDTH, extra=spec["extra"],
                         shape=[spec["frames"], spec["size"], spec["size"], 3],
                         weights=str(tmp_path / f"{arch}.weights.h5"),
                         clips=str(tmp_path / f"{arch}_clips.npy"),
                         out=str(tmp_path / f"{arch}_jax.npy")))
    script = tmp_path / "jax_check.py"
    script.write_text(JAX_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), json.dumps(jobs)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job in jobs:
        expected = models[job["arch"]](inputs[job["arch"]], training=False).numpy()
        np.testing.assert_allclose(np.load(job["out"]), expected, atol=tolerance(expected),
                                   rtol=0, err_msg=job["arch"])


@pytest.mark.parametrize("arch", sorted(TINY))
def test_tflite_float_equals_keras_and_int8_runs(arch, models, tmp_path):
    model, spec = models[arch], TINY[arch]
    x = clips(2, spec["frames"], spec["size"], seed=7)
    expected = model(x, training=False).numpy()
    path = str(tmp_path / f"{arch}.tflite")
    export_tflite(model, path)
    got = np.concatenate([TFLiteModel(path)(clip[None]) for clip in x])
    np.testing.assert_allclose(got, expected, atol=tolerance(expected), rtol=0)
    if arch != "p3d63":  # int8 once (test time): P3D has every layer kind of both networks
        return           # but the weighted head pool (a MUL and a SUM)
    int8 = str(tmp_path / f"{arch}_int8.tflite")
    export_tflite(model, int8, quantize="int8",
                  representative_dataset=clips(2, spec["frames"], spec["size"], seed=3))
    out = np.concatenate([TFLiteModel(int8)(clip[None]) for clip in x])
    assert out.shape == expected.shape and np.isfinite(out).all() and np.ptp(out) > 0
    # Really int8: TFLite has no int8 CONV_3D, so Conv3D layers would stay float32 (file
    # about as large as the float one); PlanarConv3D gives int8 CONV_2D.
    assert os.path.getsize(int8) < 0.5 * os.path.getsize(path)


@pytest.mark.parametrize("arch,module,builder", [
    ("r2plus1d_r50", "keras_tin.applications.video3d.r2plus1d_r50", "R2Plus1DResNet50"),
    ("p3d63", "keras_tin.applications.video3d.p3d", "P3D63")])
def test_trainer_builds_the_architecture(arch, module, builder, monkeypatch):
    """`keras-tin train --arch NAME` builds through the trainer's keyword arguments (the
    whole CLI run is tested once, on r2plus1d_18, in test_video3d.py)."""
    import importlib

    from keras_tin.training import TrainConfig
    from keras_tin.training.trainer import build_model

    target = importlib.import_module(module)
    full = getattr(target, builder)
    monkeypatch.setattr(target, builder, lambda **kwargs: full(base_filters=WIDTH, **kwargs))
    config = TrainConfig(arch=arch, frames=16, image_size=32)
    model = build_model(config, 3, compile=False)
    assert model.name == arch and model.output_shape == (None, 3)
    assert model.input_shape == (None, 16, 32, 32, 3)

