"""SqueezeTime (xinghaochen/SqueezeTime): time folded into the channels colour-major, the
position embedding's align_corners resize, conversion of the publisher's mmaction2
checkpoints (parity with the independent PyTorch reference weights/
torch_reference_squeezetime.py, random weights, non-zero BN statistics, both the resized
and the unresized embedding paths), the refusal of a checkpoint for another T, training,
.keras round trip, JAX/torch backends, TFLite float/int8, parameter and MAC counts at full
size, and the manifest records."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import keras  # noqa: E402

import torch_reference_squeezetime as tst  # noqa: E402
from keras_tin.applications import SqueezeTime  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.applications.records import build_for_record  # noqa: E402
from keras_tin.export import TFLiteModel  # noqa: E402
from keras_tin.export import export_tflite  # noqa: E402
from keras_tin.export.litert import float_ops  # noqa: E402
from keras_tin.export.litert import op_names  # noqa: E402
from keras_tin.layers import squeezetime as st_layers  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import labels as tin_labels  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

FRAMES, SIZE, CLASSES, WIDTH = 4, 64, 5, 8
# Maps at 64 px: stage 1 16x16, stage 2 8x8, stage 3 4x4, stage 4 2x2. These pos_dims
# leave stages 1 and 3 unresized and resize stage 2 up (4 -> 8) and stage 4 down (3 -> 2).
POS_DIM = (16, 4, 4, 3)
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4
TINY = (1, 1, 1, 1)  # one bottleneck per stage: the conformance checks' short network


def clips(seed, n=3, frames=FRAMES, size=SIZE):
    """Moving coloured gratings plus noise, per clip (0-255 RGB)."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    colour = rng.uniform(40, 215, (n, 1, 1, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1, 1)) + np.linspace(0, 2.0, frames)[
        None, :, None, None, None]
    wave = 60 * np.sin(4 * (np.cos(phase) * xx[..., None] + np.sin(phase) * yy[..., None]))
    noise = rng.normal(0, 12, (n, frames, size, size, 3))
    return np.clip(colour + wave + noise, 0, 255).astype(np.float32)


def to_torch(x):
    return torch.from_numpy(np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 4, 1, 2, 3)))


def reference(seed, frames=FRAMES, classes=CLASSES, width=WIDTH, pos_dim=POS_DIM,
              stage_blocks=tst.STAGE_BLOCKS):
    calibration = to_torch(clips(seed + 100, n=16, frames=frames))
    return tst.randomize(tst.Recognizer(frames, classes, width, pos_dim, stage_blocks), seed,
                         calibrate_with=calibration)


def small(frames=FRAMES, classes=CLASSES, **kwargs):
    return SqueezeTime(frames=frames, input_shape=(frames, SIZE, SIZE, 3), classes=classes,
                       base_filters=WIDTH, pos_dim=POS_DIM, classifier_activation=None,
                       **kwargs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The same for a network of one bottleneck per stage (fit, backends, export)."""
    ref = reference(seed=2, stage_blocks=TINY)
    path = save(ref, tmp_path_factory.mktemp("st_tiny") / "squeezetime_tiny.pth")
    return ref, path, small(weights=path, stage_blocks=TINY)


def save(ref, path):
    torch.save(tst.checkpoint(ref), str(path))
    return str(path)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(reference, path of its mmaction2-style checkpoint, keras model loaded from it)."""
    ref = reference(seed=1)
    path = save(ref, tmp_path_factory.mktemp("st") / "squeezetime.pth")
    return ref, path, small(weights=path)


# --- the layers -----------------------------------------------------------------------

def test_frames_are_stacked_colour_major_as_the_publishers_view():
    x = np.random.RandomState(0).normal(size=(2, 3, 5, 4, 3)).astype(np.float32)
    folded = x.reshape(6, 5, 4, 3)  # FoldFrames' clip-major rows
    ours = np.asarray(st_layers.TimeIntoChannels(3)(folded))
    theirs = torch.from_numpy(x.transpose(0, 4, 1, 2, 3).copy()).reshape(2, 9, 5, 4)
    np.testing.assert_array_equal(ours, theirs.numpy().transpose(0, 2, 3, 1))
    assert ours[0, 1, 2, 1 * 3 + 2] == x[0, 2, 1, 2, 1]  # channel c*T + t: c=1, t=2


@pytest.mark.parametrize("size,source", [(8, 4), (2, 3), (7, 7), (1, 5), (28, 56)])
def test_embedding_resize_is_bilinear_with_align_corners(size, source):
    pos = np.random.RandomState(size).normal(size=(source, source, 6)).astype(np.float32)
    layer = st_layers.PositionEmbedding2D(source)
    layer.build((None, size, size, 6))
    layer.pos_embed.assign(pos)
    assert layer.resized == (size != source)
    ours = np.asarray(layer.embedding())
    t = torch.from_numpy(pos.transpose(2, 0, 1)[None].copy())
    ref = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(ours, ref[0].numpy().transpose(1, 2, 0), atol=1e-6)
    if size == source:
        np.testing.assert_array_equal(ours, pos)


# --- conversion -----------------------------------------------------------------------

def test_converted_checkpoint_matches_pytorch(converted, tiny):
    """Random weights, calibrated-then-perturbed BN statistics, random position
    embeddings; loaded through the real loader from {"meta", "state_dict"} with the
    publisher's backbone.net.* / cls_head.fc_cls.* keys."""
    ref, _, model = converted
    embeds = [layer for layer in model.layers
              if isinstance(layer, st_layers.PositionEmbedding2D)]
    assert len(embeds) == 16
    assert {layer.resized for layer in embeds} == {True, False}  # both paths run
    assert {layer.name[:6] for layer in embeds if layer.resized} == {"layer2", "layer4"}
    x = clips(0)
    with torch.no_grad():
        expected = ref(to_torch(x)).numpy()
    both = np.asarray(model(np.concatenate([x, x[:, ::-1]]), training=False))
    got, reversed_logits = both[:len(x)], both[len(x):]
    assert np.abs(expected - got).max() <= TOL, np.abs(expected - got).max()
    assert np.abs(expected[0] - expected[1]).max() > 1e-2  # the clips are told apart
    # Time matters: reversing the frames changes the logits by far more than TOL.
    assert np.abs(reversed_logits - got).max() > 100 * TOL
    ref, _, model = tiny  # the short network the conformance checks use
    with torch.no_grad():
        expected = ref(to_torch(x)).numpy()
    assert np.abs(expected - np.asarray(model(x, training=False))).max() <= TOL


def test_checkpoint_for_another_frame_count_is_refused(tiny, tmp_path):
    _, path, _ = tiny  # T = 4: the stem takes 12 channels
    with pytest.raises(ValueError, match=r"T=4 frames.*12 input channels.*frames=2 "
                                         r"\(6 = 3 x 2 channels\).*frames=4"):
        SqueezeTime(frames=2, input_shape=(2, SIZE, SIZE, 3), classes=CLASSES,
                    base_filters=WIDTH, pos_dim=POS_DIM, stage_blocks=TINY, weights=path)
    # A manifest record (16 frames) is refused before anything is downloaded.
    with pytest.raises(ValueError, match=r"T=16 frames.*frames=8"):
        SqueezeTime(frames=8, input_shape=(8, 32, 32, 3), base_filters=WIDTH,
                    weights="squeezetime_16f_kinetics400")


def test_other_pos_dim_and_other_families_are_refused(tiny, tmp_path):
    _, path, model = tiny
    other = SqueezeTime(frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3), classes=CLASSES,
                        base_filters=WIDTH, pos_dim=(16, 8, 4, 2), stage_blocks=TINY)
    before = [np.array(w) for w in other.get_weights()]
    with pytest.raises(ValueError, match=r"build it with pos_dim=\(16, 4, 4, 3\)"):
        load_weights(other, path, verbose=False)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, other.get_weights()))
    # A TSN checkpoint into SqueezeTime, and SqueezeTime's into a TSN: both refused.
    import torch_reference as tr
    tsn = tr.Recognizer("tsn", 18, FRAMES, CLASSES).state_dict()
    with pytest.raises(ValueError, match="not a SqueezeTime checkpoint"):
        load_weights(model, save_state(tsn, tmp_path / "tsn.pth"), verbose=False)
    from keras_tin.applications import TSNResNet18
    with pytest.raises(ValueError, match="SqueezeTime network.*build"):
        load_weights(TSNResNet18(frames=FRAMES, input_shape=(FRAMES, 32, 32, 3)), path,
                     verbose=False)


def save_state(state, path):
    torch.save({"state_dict": state}, str(path))
    return str(path)


def test_bare_network_keys_and_a_new_head_load(tiny, tmp_path):
    """The publisher's load_ckpts matches the bare network's names (conv1.weight, ...):
    those load too; a classifier of another size keeps the model's own."""
    ref, _, model = tiny
    bare = {k[len("backbone.net."):]: v for k, v in ref.state_dict().items()
            if k.startswith("backbone.net.")}
    fresh = small(classes=CLASSES + 2, stage_blocks=TINY)
    load_weights(fresh, save_state(bare, tmp_path / "bare.pth"), verbose=False)
    a = keras.Model(fresh.inputs, fresh.get_layer("layer4_0_out").output)
    b = keras.Model(model.inputs, model.get_layer("layer4_0_out").output)
    x = clips(2, n=1)
    np.testing.assert_allclose(np.asarray(a(x, training=False)),
                               np.asarray(b(x, training=False)), atol=1e-6)


# --- Keras conformance ----------------------------------------------------------------

def test_fit_one_step_then_keras_file_round_trip(tiny, tmp_path):
    _, path, _ = tiny
    model = small(weights=path, stage_blocks=TINY)
    model.compile(keras.optimizers.SGD(0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = clips(4, n=4), np.array([0, 1, 2, 3])
    # A bias right before a BatchNormalization has no gradient in training mode (the
    # batch mean removes it): the IOI convs 0 and 3 (glo_conv.0 / .3, then BN) and the
    # depthwise downsampling conv (downsample.0, then BN); likewise the downsampling BN's
    # beta, whose output only feeds bias-free convs each followed by a BN (conv1 and the
    # projection shortcut of the same block).
    weights = [v for v in model.trainable_weights if not v.path.endswith(
        ("glo_conv_0/bias", "glo_conv_3/bias", "downsample_0/bias", "downsample_1/beta"))]
    before = [np.array(v) for v in weights]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    static = [v.path for b, v in zip(before, weights) if np.array_equal(b, np.asarray(v))]
    assert not static, f"trainable variables that did not move: {static}"
    saved = str(tmp_path / "squeezetime.keras")
    model.save(saved)
    reloaded = keras.saving.load_model(saved)
    np.testing.assert_allclose(np.asarray(reloaded(x, training=False)),
                               np.asarray(model(x, training=False)), atol=1e-6)


BACKEND_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    # Every variable is loaded from the weights file below, so the initial values do not
    # matter: zeros skip JAX's compilation of one random kernel per variable shape
    # (~1 s each on this CPU, most of the test's time otherwise).
    def _zeros(self, shape, dtype=None):
        return np.zeros(shape, dtype or "float32")
    for cls in (keras.initializers.VarianceScaling, keras.initializers.RandomNormal,
                keras.initializers.Zeros, keras.initializers.Ones):
        cls.__call__ = _zeros
    from keras_tin.applications import SqueezeTime
    frames, size, classes, width, pos, weights, x_path, out = sys.argv[1:]
    model = SqueezeTime(frames=int(frames), input_shape=(int(frames), int(size), int(size), 3),
                        classes=int(classes), base_filters=int(width),
                        pos_dim=tuple(int(p) for p in pos.split(",")),
                        stage_blocks=(1, 1, 1, 1), classifier_activation=None)
    model.load_weights(weights)
    # predict: one compiled graph on JAX (eager JAX compiles every op on first use).
    np.save(out, model.predict(np.load(x_path), verbose=0))
""")


def test_same_outputs_on_jax_and_torch(tiny, tmp_path):
    """Both backends in child processes started together (each spends most of its time
    starting up), each against the TensorFlow model's logits."""
    _, _, model = tiny
    x = clips(6, n=2)
    np.save(tmp_path / "x.npy", x)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    script = tmp_path / "run.py"
    script.write_text(BACKEND_SCRIPT)
    procs = {}
    for backend in ("jax", "torch"):
        env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="")
        procs[backend] = subprocess.Popen(
            [sys.executable, str(script), str(FRAMES), str(SIZE), str(CLASSES), str(WIDTH),
             ",".join(map(str, POS_DIM)), str(tmp_path / "w.weights.h5"),
             str(tmp_path / "x.npy"), str(tmp_path / f"{backend}.npy")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    expected = np.asarray(model(x, training=False))
    for backend, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (backend, err[-3000:])
        np.testing.assert_allclose(np.load(tmp_path / f"{backend}.npy"), expected, atol=TOL,
                                   rtol=0, err_msg=backend)


BUILTIN_INT8_OPS = {"ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "LOGISTIC",
                    "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "DEQUANTIZE", "RESHAPE",
                    "TRANSPOSE", "SUB", "AVERAGE_POOL_2D", "SOFTMAX"}


def test_tflite_float_equals_keras_and_int8_runs_on_builtins(tiny, tmp_path):
    _, _, model = tiny
    x = clips(8, n=2)
    expected = np.asarray(model(x, training=False))
    path = str(tmp_path / "st.tflite")
    export_tflite(model, path)
    got = np.concatenate([TFLiteModel(path)(clip[None]) for clip in x])
    np.testing.assert_allclose(got, expected, atol=TOL * max(1.0, np.abs(expected).max()),
                               rtol=0)
    int8 = str(tmp_path / "st_int8.tflite")
    export_tflite(model, int8, quantize="int8", representative_dataset=clips(9, n=4))
    ops = op_names(int8, delegate=False)
    assert set(ops) <= BUILTIN_INT8_OPS, ops  # builtins only: no Flex, no CUSTOM
    assert "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    assert "DELEGATE" in op_names(int8)  # XNNPACK, applied by default, takes nodes over
    # Fully integer: the only float ops quantize the float input and dequantize the output.
    assert float_ops(int8) == {"QUANTIZE": 1, "DEQUANTIZE": 1}
    out = np.concatenate([TFLiteModel(int8)(clip[None]) for clip in x])
    assert out.shape == expected.shape and np.isfinite(out).all()
    # int8 logits follow the float ones: same winning class for these clips, close values.
    assert np.abs(out - expected).max() < 0.25 * np.ptp(expected), (out, expected)


# --- full size ------------------------------------------------------------------------

def _macs_from_the_architecture(frames, size, classes):
    """MACs per clip counted from the publisher's layer shapes: convs, the 2x2 depthwise
    downsampling, the CTL's two 1x1 convs on the pooled vector, the two elementwise
    products (alpha * x, short * gate), and the classifier."""
    hw = size // 2
    macs = hw * hw * 25 * 3 * frames * 64  # stem
    hw = hw // 2  # max-pool
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        p = 64 * 2 ** stage
        for b in range(blocks):
            if stage > 0 and b == 0:
                hw //= 2
                macs += hw * hw * 4 * cin  # depthwise 2x2
            n = hw * hw
            macs += n * cin * p  # conv1
            macs += 2 * p * p  # param_conv on the pooled vector
            macs += 2 * n * p  # alpha * x and short * gate
            macs += n * p * p  # temporal_conv
            macs += n * 9 * p * p  # short_conv
            macs += n * (9 * p * 16 + 49 * 16 * 16 + 9 * 16 * p)  # glo_conv
            macs += n * p * 4 * p  # conv3
            if cin != 4 * p:
                macs += n * cin * 4 * p  # shortcut
            cin = 4 * p
    return macs + cin * classes


def test_full_size_parameters_and_macs_against_the_reference():
    """16 x 224 x 224, 400 classes (build only): trainable parameters equal the PyTorch
    reference's and the spec's 29,706,688; MACs equal the count from the architecture
    (the spec's ~5.48 G per clip)."""
    model = SqueezeTime(classes=400)
    ref = tst.Recognizer(16, 400)
    assert trainable(model) == sum(p.numel() for p in ref.parameters()) == 29_706_688
    assert model.get_layer("conv1").kernel.shape == (5, 5, 48, 64)
    macs = flops(model)
    assert macs == _macs_from_the_architecture(16, 224, 400)
    assert 5.45e9 < macs < 5.52e9
    # At 224 px the released pos_dim (56, 28, 14, 7) matches every stage: no resize.
    assert not any(layer.resized for layer in model.layers
                   if isinstance(layer, st_layers.PositionEmbedding2D))


# --- names and records ----------------------------------------------------------------

def test_architecture_name_and_records():
    model = build_for_architecture("squeezetime", frames=2, classes=3,
                                   input_shape=(2, 32, 32, 3), base_filters=WIDTH)
    assert model.name == "squeezetime" and model.output_shape == (None, 3)
    names = registry.list_pretrained("squeezetime")
    assert names == ["squeezetime_16f_hmdb51", "squeezetime_16f_imagenet1k_pretrain",
                     "squeezetime_16f_kinetics400", "squeezetime_16f_kinetics600"]
    for name in names:
        record = registry.get_record(name)
        assert record["frames"] == 16 and record["normalization"] == "imagenet"
        assert record["url"].startswith(
            "https://github.com/xinghaochen/SqueezeTime/releases/download/ckpts/")
        assert record["sha256"] is None and record["sha256_prefix"] is None
        if record["labels"]:
            assert len(tin_labels.get_labels(record["labels"])) == record["classes"]
    assert [registry.get_record(n)["top1"] for n in names] == [65.56, None, 71.64, 76.06]
    built = build_for_record(registry.get_record("squeezetime_16f_hmdb51"),
                             input_shape=(16, 32, 32, 3), base_filters=WIDTH)
    assert built.output_shape == (None, 51)
    assert built.get_layer("conv1").kernel.shape[2] == 48


def test_unverified_download_needs_opt_in(tmp_path, monkeypatch):
    """No hash is published: a downloaded file is refused unless the user opts in."""
    monkeypatch.delenv(registry.ALLOW_UNVERIFIED_ENV, raising=False)
    ref = reference(seed=3, frames=2, stage_blocks=TINY)
    src = save(ref, tmp_path / "published.pth")
    record = dict(registry.get_record("squeezetime_16f_kinetics400"),
                  url="file://" + src, frames=2, classes=CLASSES)
    monkeypatch.setattr(registry, "get_record", lambda name: dict(record))
    with pytest.raises(ValueError, match="no published hash"):
        registry.download("squeezetime_16f_kinetics400", cache_dir=str(tmp_path / "cache"))
    path = registry.download("squeezetime_16f_kinetics400", cache_dir=str(tmp_path / "cache"),
                             allow_unverified=True)
    assert os.path.getsize(path) == os.path.getsize(src)
    json.dumps(record)  # the record stays plain JSON
