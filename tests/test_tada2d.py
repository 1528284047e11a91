"""TAda2D (TAdaConv): the operator as channel scaling + one shared conv against the
publisher's per-sample-kernel grouped conv, the zero initialisations, conversion of
TAdaConv-layout checkpoints (parity with an independent PyTorch TAda2D-R50,
weights/torch_reference_tada.py), parameter and MAC counts, refusals, and the message for
checkpoints that must be downloaded by hand."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import keras  # noqa: E402

import torch_reference as tr  # noqa: E402
import torch_reference_tada as trt  # noqa: E402
from keras_tin.applications import TAda2DResNet50  # noqa: E402
from keras_tin.applications import TSNResNet50  # noqa: E402
from keras_tin.applications import TemporalResNet  # noqa: E402
from keras_tin.applications import temporal_modules  # noqa: E402
from keras_tin.applications.records import build_for_architecture  # noqa: E402
from keras_tin.layers import tada  # noqa: E402
from keras_tin.utils.flops import flops  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

FRAMES, SIZE, CLASSES, WIDTH = 4, 64, 7, 16
MEAN, STD = 114.75, 57.375
TOL = 1e-4
SPEC_EXTRA_PARAMS = 3_157_840  # ZOO_SPEC.md section 5 [calc]: TAda2D-R50 minus R50


def clips(seed=0, frames=FRAMES, size=SIZE, n=2):
    """Per-clip colours and moving gratings plus noise (0-255 RGB)."""
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


def torch_logits(ref, x):
    with torch.no_grad():
        return ref(to_torch(x)).numpy()


def reference(classes, width, seed, frames=FRAMES, size=SIZE):
    """A random TAda2D-R50 whose BN statistics follow real activations (then perturbed),
    so the clips stay apart at the logits."""
    calibration = to_torch(clips(seed + 100, frames, size, n=4))
    return trt.randomize(trt.TAda2DResNet(classes, width), seed, calibrate_with=calibration)


def small_model(frames=FRAMES, size=SIZE, classes=CLASSES, **kwargs):
    return TAda2DResNet50(frames=frames, input_shape=(frames, size, size, 3), classes=classes,
                          base_filters=WIDTH, normalization="tadaconv",
                          classifier_activation=None, **kwargs)


def save(ref, path):
    torch.save(trt.checkpoint(ref), str(path))
    return str(path)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


# --- the operator ---------------------------------------------------------------------

@pytest.mark.parametrize("strides", [1, 2])
def test_scaling_then_shared_conv_equals_per_sample_kernels(strides):
    """conv(x_t, alpha_t (x)_cin W) == conv(alpha_t * x_t, W), the publisher's grouped conv
    over batch*T calibrated kernels against our channel scaling + one shared Conv."""
    n, t, h, w, cin, cout = 2, 3, 9, 8, 6, 5
    rng = np.random.RandomState(strides)
    x = rng.normal(size=(n * t, h, w, cin)).astype(np.float32)
    beta = rng.normal(0, 0.5, (n, t, cin)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)

    inp, b_in = keras.Input((h, w, cin), batch_size=n * t), keras.Input((t, cin), batch_size=n)
    model = keras.Model([inp, b_in], tada.tada_conv2d(inp, b_in, t, cout, strides, "blk"))
    model.get_layer("blk_conv2").kernel.assign(kernel)
    ours = np.asarray(model([x, beta]))

    op = trt.TAdaConv2d(cin, cout, strides)
    with torch.no_grad():
        op.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1))[None, None])
        xt = torch.from_numpy(x.reshape(n, t, h, w, cin).transpose(0, 4, 1, 2, 3).copy())
        alpha = torch.from_numpy((beta + 1).transpose(0, 2, 1).copy())[..., None, None]
        ref = op(xt, alpha).numpy().transpose(0, 2, 3, 4, 1).reshape(ours.shape)
    assert ours.shape == (n * t, (h - 1) // strides + 1, (w - 1) // strides + 1, cout)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    # alpha really varies per clip and frame: with alpha = 1 the outputs differ.
    plain = np.asarray(model([x, np.zeros_like(beta)]))
    assert np.abs(plain - ours).max() > 0.1


def test_temporal_average_pool_counts_the_padding():
    x = np.random.RandomState(0).normal(size=(2 * 5, 2, 2, 3)).astype(np.float32)
    out = np.asarray(tada.TemporalAveragePooling(5)(x)).reshape(2, 5, 2, 2, 3)
    pool = torch.nn.AvgPool3d((3, 1, 1), 1, (1, 0, 0))  # count_include_pad=True default
    ref = pool(torch.from_numpy(x.reshape(2, 5, 2, 2, 3).transpose(0, 4, 1, 2, 3).copy()))
    np.testing.assert_allclose(out, ref.numpy().transpose(0, 2, 3, 4, 1), atol=1e-6)
    v = x.reshape(2, 5, 2, 2, 3)
    np.testing.assert_allclose(out[:, 0], (v[:, 0] + v[:, 1]) / 3, atol=1e-6)  # not / 2


# --- initialisation -------------------------------------------------------------------

def _plain_conv2(site):
    """A conv2 replacement that is the plain ResNet conv2 + bn2 (+ ReLU), same names."""
    def apply(x):
        y = tada.TemporalConv2D(site.filters, 3, site.strides, padding=1,
                                name=f"{site.name}_conv2")(x)
        y = tada._batch_norm(f"{site.name}_bn2")(y)
        return keras.layers.ReLU()(y) if site.relu else y
    return apply


@pytest.mark.parametrize("depth", [50, 18])
def test_fresh_tada_blocks_are_the_plain_conv2_path(depth):
    """alpha = 1 (route function's last conv is zero) and BN_pool gamma = beta = 0, so a
    fresh TAda2D network, whatever its other weights and BN statistics, equals the same
    network with plain conv2 + bn2 blocks (bottleneck and basic blocks)."""
    kw = dict(frames=FRAMES, input_shape=(FRAMES, 32, 32, 3), classes=CLASSES,
              base_filters=WIDTH, normalization="tadaconv", classifier_activation=None)
    model = TemporalResNet("tada2d", depth, **kw)
    rf_b = [layer for layer in model.layers if layer.name.endswith("_tada_rf_b")]
    pool_bn = [layer for layer in model.layers if layer.name.endswith("_tada_pool_bn")]
    assert len(rf_b) == len(pool_bn) == (16 if depth == 50 else 8)
    assert all(not np.any(np.asarray(layer.kernel)) for layer in rf_b)
    assert all(not np.any(np.asarray(layer.gamma)) and not np.any(np.asarray(layer.beta))
               for layer in pool_bn)
    # Randomise everything else (BN statistics included).
    rng = np.random.RandomState(depth)
    keep = {id(v) for layer in rf_b + pool_bn for v in layer.weights
            if v.path.split("/")[-1] in ("kernel", "gamma", "beta")}
    for v in model.weights:
        if id(v) not in keep:
            shape = tuple(v.shape)
            v.assign(rng.uniform(0.5, 1.5, shape) if "variance" in v.path
                     else rng.normal(0, 0.3, shape))

    temporal_modules.register(temporal_modules.ModuleSpec(
        "tada_plain_test", "conv2", _plain_conv2, stem_maxpool=False,
        stage_strides=(2, 2, 2, 2)), overwrite=True)
    try:
        plain = TemporalResNet("tada_plain_test", depth, **kw)
    finally:
        temporal_modules.unregister("tada_plain_test")
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    x = clips(3, size=32)
    ours, ref = np.asarray(model(x, training=False)), np.asarray(plain(x, training=False))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert np.abs(ref).max() > 1e-2
    # ...and a non-zero route function changes the output.
    rf_b[0].kernel.assign(rng.normal(0, 0.5, tuple(rf_b[0].kernel.shape)))
    assert np.abs(np.asarray(model(x, training=False)) - ours).max() > 1e-4


# --- conversion -----------------------------------------------------------------------

def test_converted_checkpoint_matches_pytorch(tmp_path):
    """Random weights, non-zero BN statistics, route functions and pool BNs non-zero,
    loaded through the real loader from a {"model_state": ...} file named as the TAdaConv
    checkpoint code names its files (.pyth)."""
    ref = reference(CLASSES, WIDTH, seed=1)
    path = save(ref, tmp_path / "tada2d.pyth")
    model = small_model(weights=path)
    x = clips(0)
    expected, got = torch_logits(ref, x), np.asarray(model(x, training=False))
    assert np.abs(expected - got).max() <= TOL, np.abs(expected - got).max()
    assert np.abs(expected[0] - expected[1]).max() > 1e-2  # the clips are told apart
    # Every rf_b and pool BN was non-zero in the checkpoint, and now in the model.
    assert all(np.any(np.asarray(layer.weights[0])) for layer in model.layers
               if layer.name.endswith(("_tada_rf_b", "_tada_pool_bn")))


def test_real_width_resnet50_parity_and_parameter_count(tmp_path):
    """TAda2D-R50 at width 64 (400 classes): trainable parameters equal the reference's
    and the spec's ResNet-50 + 3,157,840; logits equal the reference's (small clips)."""
    ref = reference(400, 64, seed=2, frames=4, size=64)
    model = TAda2DResNet50(frames=4, input_shape=(4, 64, 64, 3), classes=400,
                           normalization="tadaconv", classifier_activation=None,
                           weights=save(ref, tmp_path / "r50.pth"))
    ref_params = sum(p.numel() for p in ref.parameters())
    tsn = TSNResNet50(frames=4, input_shape=(4, 64, 64, 3), classes=400)
    assert trainable(model) == ref_params
    assert trainable(model) - trainable(tsn) == SPEC_EXTRA_PARAMS
    x = clips(5, frames=4, size=64)
    expected = torch_logits(ref, x)
    diff = np.abs(expected - np.asarray(model(x, training=False))).max()
    assert diff <= TOL, diff
    assert np.abs(expected[0] - expected[1]).max() > 1e-2


def test_macs_at_8x224_count_the_route_function_and_scaling():
    """keras_tin.utils.flops against a count from the architecture: stem, bottlenecks (the
    stride on each stage's first 3x3, no max-pool), route functions (the 1x1 once per
    clip, two k=3 temporal convs per frame), the input scaling, the classifier."""
    t, size, classes = 8, 224, 400
    model = TAda2DResNet50(frames=t, input_shape=(t, size, size, 3), classes=classes)
    tsn = TSNResNet50(frames=t, input_shape=(t, size, size, 3), classes=classes)
    hw = size // 2
    per_frame = hw * hw * 7 * 7 * 3 * 64
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        planes = 64 * 2 ** stage
        for b in range(blocks):
            out = hw // 2 if b == 0 else hw
            per_frame += hw * hw * cin * planes  # conv1 (before the stride)
            per_frame += planes * planes / t + 2 * 3 * planes * planes // 4  # route
            per_frame += hw * hw * planes  # x * alpha
            per_frame += out * out * 9 * planes * planes + out * out * planes * 4 * planes
            if b == 0:
                per_frame += out * out * cin * 4 * planes  # shortcut
            cin, hw = 4 * planes, out
    per_frame += 2048 * classes
    assert flops(model) == int(round(per_frame * t))
    ratio = flops(model) / flops(tsn)
    assert 1.005 < ratio < 1.02, ratio  # the spec's "R50 x T (+~1%)"
    assert 32.5e9 < flops(model) < 33.5e9


def test_architecture_name_and_basic_blocks_build():
    model = build_for_architecture("tada2d_resnet50", frames=2, classes=3,
                                   input_shape=(2, 32, 32, 3), base_filters=WIDTH)
    assert model.name == "tada2d_resnet50" and model.output_shape == (None, 3)
    assert "maxpool" not in [layer.name for layer in model.layers]
    small = build_for_architecture("tada2d_resnet18", frames=2, classes=3,
                                   input_shape=(2, 32, 32, 3), base_filters=WIDTH)
    out = np.asarray(small(clips(1, frames=2, size=32)))
    assert out.shape == (2, 3) and np.allclose(out.sum(-1), 1, atol=1e-5)


# --- refusals -------------------------------------------------------------------------

def test_tada_checkpoint_into_another_model_is_refused(tmp_path):
    ref = trt.randomize(trt.TAda2DResNet(CLASSES, WIDTH), seed=3)
    path = save(ref, tmp_path / "tada2d.pth")
    tsm = TemporalResNet("tsm", 50, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                         classes=CLASSES, base_filters=WIDTH)
    before = snapshot(tsm)
    with pytest.raises(ValueError) as info:
        load_weights(tsm, path, verbose=False)
    message = str(info.value)
    assert "TAda2D" in message and f"'{tsm.name}'" in message and "TSM" in message
    assert "Nothing was loaded" in message and same(before, snapshot(tsm))


def test_other_checkpoint_into_tada_model_is_refused(tmp_path):
    other = tr.randomize(tr.Recognizer("tsm", 18, FRAMES, CLASSES))
    path = tmp_path / "tsm.pth"
    torch.save({"state_dict": other.state_dict()}, str(path))
    model = small_model()
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        load_weights(model, str(path), verbose=False)
    message = str(info.value)
    assert "TAda2D" in message and f"'{model.name}'" in message
    assert "backbone.conv1.conv.weight" in message and same(before, snapshot(model))


def test_missing_and_unexpected_keys_are_listed_and_nothing_loads(tmp_path):
    ref = trt.randomize(trt.TAda2DResNet(CLASSES, WIDTH), seed=4)
    state = ref.state_dict()
    del state["backbone.conv3.res_2.conv_branch.b_rf.g.bias"]
    state["backbone.conv4.res_1.conv_branch.b_rf.b.weight"] = torch.zeros(64, 16, 3, 3, 1)
    path = tmp_path / "broken.pth"
    torch.save({"model_state": state}, str(path))
    model = small_model()
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        load_weights(model, str(path), verbose=False)
    message = str(info.value)
    assert "layer2_1_tada_rf_g/bias" in message  # missing
    assert "layer3_0_tada_rf_b:weight (64, 16, 3, 3, 1)" in message  # mismatched
    assert "nothing was loaded" in message and same(before, snapshot(model))

    state = ref.state_dict()
    state["backbone.conv2.res_1.conv_branch.b_extra.weight"] = torch.zeros(3)
    torch.save({"model_state": state}, str(path))
    with pytest.raises(ValueError, match=r"Unmapped keys: \['backbone\.conv2\.res_1\."
                                         r"conv_branch\.b_extra\.weight'\]"):
        load_weights(model, str(path), verbose=False)
    assert same(before, snapshot(model))


# --- manifest records that must be downloaded by hand ---------------------------------

NAMES = ("tada2d_resnet50_8f_kinetics400_tadaconv", "tada2d_resnet50_16f_kinetics400_tadaconv",
         "tada2d_resnet50_8f_sthv2_tadaconv", "tada2d_resnet50_16f_sthv2_tadaconv")


def test_manifest_records():
    for name in NAMES:
        r = registry.get_record(name)
        assert r["architecture"] == "tada2d_resnet50" and r["layout"] == "tadaconv"
        assert r["url"] is None and r["download"] == "manual"
        assert r["download_page"].startswith("https://drive.google.com/file/d/")
        assert r["normalization"] == "tadaconv" and r["mean"] == [114.75] * 3
        assert r["std"] == [57.375] * 3 and r["input_size"][1:] == [256, 256, 3]
        assert (r["classes"], r["labels"]) == ((400, "kinetics-400") if "kinetics" in name
                                               else (174, "something-something-v2"))
        assert r["frames"] == (16 if "_16f_" in name else 8)
    tops = [registry.get_record(n)["top1"] for n in NAMES]
    assert tops == [76.7, 77.4, 64.0, 65.6]


def test_manual_download_says_where_and_how(tmp_path):
    name = NAMES[0]
    record = registry.get_record(name)
    model = small_model(frames=8, size=32, classes=400)
    with pytest.raises(registry.ManualDownloadError) as info:
        load_weights(model, name, cache_dir=str(tmp_path))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert record["download_page"] in message
    assert "https://pan.baidu.com/s/1rPPZtVDlEoftkg-r_Di59w" in message and "p06d" in message
    assert 'weights="<path to file>"' in message
    cached = tmp_path / registry.CACHE_SUBDIR / f"{name}.pth"
    assert str(cached) in message and "allow_unverified=True" in message


def test_manual_file_in_the_cache_is_hash_checked_then_loads(tmp_path, monkeypatch):
    name = NAMES[0]
    ref = reference(400, WIDTH, seed=6, frames=8, size=32)
    cached = tmp_path / registry.CACHE_SUBDIR / f"{name}.pth"
    cached.parent.mkdir(parents=True)
    save(ref, cached)
    model = small_model(frames=8, size=32, classes=400)
    before = snapshot(model)
    # No published hash: refused unless allowed.
    with pytest.raises(ValueError, match="no published hash"):
        load_weights(model, name, cache_dir=str(tmp_path))
    # A published hash that the file does not match: refused, naming both.
    actual = registry.sha256_of(str(cached))
    record = dict(registry.get_record(name), sha256_prefix="0badc0de")
    monkeypatch.setattr(registry, "_records", lambda: {name: record})
    with pytest.raises(ValueError, match=f"expected 0badc0de.*got {actual}"):
        load_weights(model, name, cache_dir=str(tmp_path))
    assert same(before, snapshot(model))
    # The right hash: loads, and equals PyTorch.
    record["sha256_prefix"] = actual[:8]
    load_weights(model, name, cache_dir=str(tmp_path), verbose=False)
    x = clips(7, frames=8, size=32, n=1)
    diff = np.abs(torch_logits(ref, x) - np.asarray(model(x, training=False))).max()
    assert diff <= TOL, diff
