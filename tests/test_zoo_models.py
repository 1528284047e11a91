"""What every model of the zoo must do for a user, the same checks for each new temporal
module (TAda2D, TEA on Res2Net, STM, ECA channel attention): train with model.fit, save and
reload as .keras, run on the JAX and PyTorch backends with the same outputs, export to a
SavedModel that reloads without keras_tin and to TFLite (float within 1e-4 of Keras, relative
to the logits' scale where it exceeds 1; int8 runs), and be selectable by architecture name in `keras-tin train --arch`.

The models are small (base width 16, 4 frames, 32 px) with trained-like BatchNorm statistics
(export_helpers.recalibrate_batchnorm) and every zero-initialised parameter made non-zero,
so a check cannot pass because a module is still the identity.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from export_helpers import clips
from export_helpers import recalibrate_batchnorm

import training_layouts
from keras_tin import architectures
from keras_tin import cli
from keras_tin.applications.records import build_for_architecture
from keras_tin.export import TFLiteModel
from keras_tin.export import export_saved_model
from keras_tin.export import export_tflite

FRAMES, SIZE, CLASSES = 4, 32, 3
# Variables whose gradient is exactly zero in training mode: a bias right before a
# BatchNormalization (the batch mean removes it): TAda's route-function conv a.
NO_GRADIENT = ("tada_rf_a/bias",)


def tolerance(expected):
    """1e-4, relative to the logits' scale when it exceeds 1 (float32 keeps ~7 digits)."""
    return 1e-4 * max(1.0, float(np.abs(expected).max()))
ZOO = ("tada2d_resnet50", "tea_res2net50", "stm_resnet50", "tsm_eca_resnet50")


def perturb_all(model, scale=0.05):
    """Adds noise to every variable: zero-initialised branches (TAda's route function and
    pool BN, ...) then change the output, as in a trained network."""
    rng = np.random.default_rng(5)
    for variable in model.weights:
        if "moving_variance" in variable.path:
            continue
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(value + rng.normal(0.0, scale, value.shape).astype(value.dtype))
    return model


# Clips for the BatchNorm statistics. TAda2D's calibration x * (1 + beta(x)) is quadratic
# in its input, so a clip that leaves the range the statistics were taken on grows block
# after block: with statistics from 8 clips, 14 of 40 other clips drove the tiny
# TAda2D-ResNet-50's logits above 50, up to 1e24 or NaN (4 of the 8 int8 calibration
# clips: int8 calibration then overflows); from 32 clips, none (largest logit 35).
RECALIBRATION_CLIPS = 32


def tiny(arch, **kwargs):
    keras.utils.set_random_seed(0)
    model = build_for_architecture(arch, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                                   classes=CLASSES, base_filters=16, **kwargs)
    perturb_all(model)
    return recalibrate_batchnorm(model, clips(RECALIBRATION_CLIPS, FRAMES, SIZE, seed=100))


@pytest.fixture(scope="module")
def models():
    return {arch: tiny(arch, classifier_activation=None) for arch in ZOO}


@pytest.fixture(scope="module")
def eval_clips():
    return clips(3, FRAMES, SIZE, seed=7)


@pytest.mark.parametrize("arch", ZOO)
def test_architecture_name_builds_the_module(arch, models):
    parsed = architectures.parse(arch)
    model = models[arch]
    names = " ".join(layer.name for layer in model.layers)
    marker = {"tada2d": "tada", "tea": "_me_", "stm": "_mb_"}.get(parsed.temporal)
    if parsed.channel_attention:
        marker = "_eca"
    assert marker in names, (arch, names[:400])
    assert model.output_shape == (None, CLASSES)


@pytest.mark.parametrize("arch", ZOO)
def test_fit_then_keras_file_round_trip(arch, tmp_path):
    model = tiny(arch)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    x = clips(4, FRAMES, SIZE, seed=1)
    y = np.array([0, 1, 2, 1])
    weights = [v for v in model.trainable_weights if not v.path.endswith(NO_GRADIENT)]
    before = [keras.ops.convert_to_numpy(v).copy() for v in weights]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, weights)
              if np.array_equal(b, keras.ops.convert_to_numpy(v))]
    assert not static, f"trainable variables that did not move: {static}"
    path = str(tmp_path / f"{arch}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


BACKEND_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import keras
    from keras_tin.applications.records import build_for_architecture
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    jobs = json.loads(sys.argv[1])
    for job in jobs:
        model = build_for_architecture(job["arch"], frames=job["frames"],
                                       input_shape=tuple(job["shape"]), classes=job["classes"],
                                       base_filters=16, classifier_activation=None)
        model.load_weights(job["weights"])
        x = np.load(job["clips"])
        np.save(job["out"], keras.ops.convert_to_numpy(model(x, training=False)))
        model.compile(keras.optimizers.SGD(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = model.fit(x, np.arange(len(x)) % job["classes"], epochs=1, verbose=0)
        assert np.isfinite(loss.history["loss"][-1]), job["arch"]
    print("OK", keras.backend.backend())
""")


@pytest.fixture(scope="module")
def saved_weights(models, eval_clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo_weights")
    np.save(root / "clips.npy", eval_clips)
    jobs = []
    for arch, model in models.items():
        path = str(root / f"{arch}.weights.h5")
        model.save_weights(path)
        jobs.append(dict(arch=arch, frames=FRAMES, shape=[FRAMES, SIZE, SIZE, 3],
                         classes=CLASSES, weights=path, clips=str(root / "clips.npy")))
    return root, jobs


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_outputs_and_training_on_jax_and_torch(backend, models, eval_clips,
                                                     saved_weights):
    root, jobs = saved_weights
    jobs = [dict(job, out=str(root / f"{job['arch']}_{backend}.npy")) for job in jobs]
    script = root / "backend_check.py"
    script.write_text(BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), json.dumps(jobs)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job in jobs:
        expected = models[job["arch"]](eval_clips, training=False).numpy()
        np.testing.assert_allclose(np.load(job["out"]), expected, atol=tolerance(expected),
                                   rtol=0, err_msg=f"{job['arch']} on {backend}")


RELOAD = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.modules["keras_tin"] = None  # any `import keras_tin` now raises ImportError
    import numpy as np
    import tensorflow as tf
    for job in json.loads(sys.argv[1]):
        fn = tf.saved_model.load(job["path"]).signatures["serving_default"]
        out = fn(clips=tf.constant(np.load(job["clips"])))["predictions"].numpy()
        np.save(job["out"], out)
    print("RELOADED")
""")


def test_saved_model_reloads_without_keras_tin_and_equals_keras(models, eval_clips, tmp_path):
    np.save(tmp_path / "clips.npy", eval_clips)
    jobs = []
    for arch, model in models.items():
        path = export_saved_model(model, tmp_path / arch, input_dtype="float32")
        jobs.append(dict(path=str(path), clips=str(tmp_path / "clips.npy"),
                         out=str(tmp_path / f"{arch}.npy")))
    script = tmp_path / "reload.py"
    script.write_text(RELOAD)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-I", str(script), json.dumps(jobs)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for arch, job in zip(models, jobs):
        expected = models[arch](eval_clips, training=False).numpy()
        np.testing.assert_allclose(np.load(job["out"]), expected, atol=tolerance(expected),
                                   rtol=0, err_msg=arch)


@pytest.mark.parametrize("arch", ZOO)
def test_tflite_float_equals_keras_and_int8_runs(arch, models, eval_clips, tmp_path):
    model = models[arch]
    expected = model(eval_clips, training=False).numpy()
    path = str(tmp_path / f"{arch}.tflite")
    export_tflite(model, path)
    got = np.concatenate([TFLiteModel(path)(clip[None]) for clip in eval_clips])
    np.testing.assert_allclose(got, expected, atol=tolerance(expected), rtol=0)
    int8 = str(tmp_path / f"{arch}_int8.tflite")
    export_tflite(model, int8, quantize="int8",
                  representative_dataset=clips(8, FRAMES, SIZE, seed=3))
    out = np.concatenate([TFLiteModel(int8)(clip[None]) for clip in eval_clips])
    assert out.shape == expected.shape and np.isfinite(out).all()
    # Not a constant: the int8 logits still separate the clips' classes somewhat.
    assert np.ptp(out) > 0


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return training_layouts.three_class_videos(str(tmp_path_factory.mktemp("videos")))


@pytest.mark.parametrize("arch", ["tada2d_resnet50", "tea_res2net50"])
def test_train_cli_selects_the_architecture(arch, videos, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--dataset", "folder", "--root", videos, "--output-dir",
                     str(out), "--arch", arch, "--base-filters", "16", "--image-size", "32",
                     "--frames", "4", "--epochs", "1", "--batch-size", "2", "--val-split", "",
                     "--verbose", "0"])
    assert code == 0, capsys.readouterr()
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.name == arch
    saved = json.loads((out / "config.json").read_text())
    assert saved["arch"] == arch


def test_train_config_arch_errors_quote_the_value():
    from keras_tin.training import TrainConfig

    config = TrainConfig(arch="stm_resnet50")
    assert (config.temporal, config.depth) == ("stm", 50)
    with pytest.raises(ValueError, match=r"Received: arch='tada_resnet5'"):
        TrainConfig(arch="tada_resnet5")
    with pytest.raises(ValueError, match="image backbone"):
        TrainConfig(arch="res2net50")


@pytest.mark.parametrize("arch", ZOO)
def test_seeded_builds_are_identical_and_layers_differ(arch):
    """keras.utils.set_random_seed makes a build reproducible (a module-level initializer
    object once drew its seed at import: TAda's route convs, TEA's and STM's 1x1 convs
    changed from process to process and every layer of a shape started the same)."""
    def build():
        keras.utils.set_random_seed(3)
        return build_for_architecture(arch, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                                      classes=CLASSES, base_filters=16)

    first, second = build(), build()
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a),
                                      keras.ops.convert_to_numpy(b), err_msg=a.path)
    # Random kernels of the same shape differ between blocks (the temporal convs' identity
    # / shift initialisations are 0/1 patterns, the same by design, and left out).
    by_shape = {}
    for v in first.trainable_weights:
        value = keras.ops.convert_to_numpy(v)
        if v.path.endswith("kernel") and not set(np.unique(value)) <= {0.0, 1.0}:
            by_shape.setdefault(value.shape, []).append((v.path, value.tobytes()))
    repeated = [[p for p, _ in group] for group in by_shape.values()
                if len({data for _, data in group}) < len(group)]
    assert not repeated, repeated
