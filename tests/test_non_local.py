"""Non-local blocks (mmaction2's non-local TSM): PyTorch parity, identity at init, parameter
counts, refusals, saving and XLA."""

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import test_weights_parity as parity  # noqa: E402
import torch_reference as tr  # noqa: E402
from keras_tin import layers  # noqa: E402
from keras_tin.applications.temporal_resnet import TemporalResNet  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402

MODES = ("embedded_gaussian", "dot_product", "gaussian")
FRAMES, CLASSES, TOL = parity.FRAMES, parity.CLASSES, parity.TOL
SIZE = 64  # layer2 8x8 (keys 4x4), layer3 4x4 (keys 2x2)
# The published configs: blocks 0, 2 of layer2 (C = 512) and 0, 2, 4 of layer3 (C = 1024).
R50_NL_CHANNELS = (512, 512, 1024, 1024, 1024)


def r50(non_local=None, size=SIZE, **kwargs):
    return TemporalResNet("tsm", 50, frames=FRAMES, input_shape=(FRAMES, size, size, 3),
                          classes=CLASSES, classifier_activation=None, non_local=non_local,
                          **kwargs)


def reference(mode, seed, depth=50, classes=CLASSES):
    return tr.randomize(tr.Recognizer("tsm", depth, FRAMES, classes, non_local=mode), seed=seed)


def without_non_local(ref):
    """The reference with every non-local BN's gamma and beta zeroed: the branch is gone."""
    with torch.no_grad():
        for module in ref.modules():
            if isinstance(module, tr.NonLocal3d):
                module.conv_out.bn.weight.zero_()
                module.conv_out.bn.bias.zero_()
    return ref


@pytest.fixture(scope="module")
def plain_r50():
    return r50()


@pytest.mark.parametrize("mode", MODES)
def test_converted_non_local_logits_match_pytorch(mode, tmp_path):
    ref = reference(mode, seed=11)
    state = ref.state_dict()
    assert "backbone.layer3.4.non_local_block.conv_out.bn.weight" in state
    assert "backbone.layer3.4.block.conv1.conv.net.weight" in state  # shifted, then wrapped
    assert ("backbone.layer2.0.non_local_block.theta.conv.weight" in state) == (
        mode != "gaussian")
    model = r50(mode)
    load_weights(model, str(parity.save(state, tmp_path / "nl.pth")), verbose=False)
    x = parity.clips(seed=4, size=SIZE)
    want = parity.torch_logits(ref, x)
    got = np.asarray(model.predict(x, verbose=0))
    err = np.abs(got - want).max()
    # The comparison can fail: without its non-local blocks the reference moves by far more
    # than the tolerance.
    effect = np.abs(parity.torch_logits(without_non_local(ref), x) - want).max()
    print(f"TSM-R50 NL {mode}: max |keras - torch| = {err:.2e}, max |logit| = "
          f"{np.abs(want).max():.3f}, non-local effect {effect:.3f}")
    assert err < TOL, err
    assert effect > 100 * TOL, effect


def expected_extra_parameters(mode, channels):
    """(trainable, non-trainable) of the non-local blocks from the mmcv NonLocal3d spec:
    g / theta / phi 1x1 convs C -> C/2 with bias (gaussian: g only), conv_out C/2 -> C
    without bias, BN gamma/beta (trainable) and moving mean/variance."""
    trainable = non_trainable = 0
    for c in channels:
        inter = c // 2
        embeddings = 1 if mode == "gaussian" else 3
        trainable += embeddings * (c * inter + inter) + inter * c + 2 * c
        non_trainable += 2 * c
    return trainable, non_trainable


def count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.parametrize("mode", MODES)
def test_fresh_non_local_blocks_are_identities_with_the_expected_parameters(mode, plain_r50):
    model = r50(mode)
    nl_layers = [l.name for l in model.layers if l.name.endswith("_nl_bn")]
    assert nl_layers == [f"layer{s}_{b}_nl_bn" for s, b in ((2, 0), (2, 2), (3, 0), (3, 2),
                                                            (3, 4))]
    trainable, non_trainable = expected_extra_parameters(mode, R50_NL_CHANNELS)
    assert count(model.trainable_weights) - count(plain_r50.trainable_weights) == trainable
    assert (count(model.non_trainable_weights) - count(plain_r50.non_trainable_weights)
            == non_trainable)
    assert trainable == {"gaussian": 3_680_256}.get(mode, 7_354_368)
    for layer in plain_r50.layers:  # same backbone weights in both models
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    # The embeddings are random (N(0, 0.01)), but the BN's gamma and beta are 0.
    assert np.abs(model.get_layer("layer2_0_nl_g").kernel.numpy()).max() > 0
    x = parity.clips(seed=6, size=SIZE)
    np.testing.assert_array_equal(model.predict(x, verbose=0), plain_r50.predict(x, verbose=0))


def test_checkpoints_with_and_without_non_local_blocks_are_refused(plain_r50, tmp_path):
    nl_ckpt = parity.save(reference("embedded_gaussian", seed=13).state_dict(),
                          tmp_path / "nl.pth")
    plain_ckpt = parity.save(reference(None, seed=14).state_dict(), tmp_path / "plain.pth")
    gaussian_ckpt = parity.save(reference("gaussian", seed=15).state_dict(),
                                tmp_path / "gaussian.pth")
    before = plain_r50.get_layer("layer2_0_conv1").kernel.numpy().copy()
    with pytest.raises(ValueError, match=r"no matching model variable.*layer2_0_nl_g/kernel.*"
                                         r"build the model with non_local="):
        load_weights(plain_r50, str(nl_ckpt), verbose=False)
    np.testing.assert_array_equal(plain_r50.get_layer("layer2_0_conv1").kernel.numpy(), before)
    model = r50("embedded_gaussian")
    with pytest.raises(ValueError, match=r"does not provide.*layer2_0_nl_g/kernel.*"
                                         r"build it with non_local=None"):
        load_weights(model, str(plain_ckpt), verbose=False)
    # gaussian has no theta / phi embeddings; the other modes' checkpoints have them.
    with pytest.raises(ValueError, match=r"does not provide.*layer2_0_nl_theta/kernel"):
        load_weights(model, str(gaussian_ckpt), verbose=False)
    with pytest.raises(ValueError, match=r"no matching model variable.*layer2_0_nl_theta"):
        load_weights(r50("gaussian"), str(nl_ckpt), verbose=False)


def test_cli_conversion_and_odd_feature_maps(tmp_path, capsys):
    """keras-tin convert --non-local; then at 72 px, where layer2 is 9x9 (keys 4x4) and
    layer3 5x5 (keys 2x2), the pooling drops a row and a column as torch's MaxPool3d
    (floor) does."""
    from keras_tin import cli
    ref = reference("dot_product", seed=12)
    src = str(parity.save(ref.state_dict(), tmp_path / "nl.pth"))
    out = tmp_path / "nl.weights.h5"
    assert cli.main(["convert", src, str(out), "--arch", "tsm_resnet50"]) == 1
    assert "build the model with non_local=" in capsys.readouterr().out
    assert cli.main(["convert", src, str(out), "--arch", "tsm_resnet50",
                     "--non-local", "dot_product"]) == 0
    model = r50("dot_product", size=72)
    assert model.get_layer("layer2_0_nl_g_pool").output.shape[1:3] == (4, 4)
    assert model.get_layer("layer3_0_nl_g_pool").output.shape[1:3] == (2, 2)
    model.load_weights(str(out))
    x = parity.clips(seed=5, size=72)
    err = np.abs(np.asarray(model.predict(x, verbose=0)) - parity.torch_logits(ref, x)).max()
    assert err < TOL, err


def test_conv3d_with_a_temporal_kernel_is_refused():
    from keras_tin.weights import layouts
    state = {"backbone.layer2.0.non_local_block.g.0.conv.weight": np.zeros((4, 8, 3, 1, 1))}
    with pytest.raises(ValueError, match="temporal kernel size 3"):
        layouts.canonicalize(state)
    ok = {"backbone.layer2.0.non_local_block.g.0.conv.weight": np.zeros((4, 8, 1, 1, 1))}
    assert layouts.canonicalize(ok)[0]["layer2.0.nl.g.weight"].shape == (4, 8, 1, 1)


def test_torchvision_backbone_initialises_a_non_local_model(tmp_path, capsys):
    """mmaction2 trains its non-local TSM from an ImageNet ResNet: the non-local blocks keep
    their (identity) initialisation, the rest loads."""
    tsn = tr.to_authors_layout(tr.randomize(tr.Recognizer("tsn", 18, 8, 1000), 7).state_dict())
    plain = {k[len("module.base_model."):]: v for k, v in tsn.items() if "base_model" in k}
    model = TemporalResNet("tsm", 18, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                           classes=CLASSES, non_local="dot_product")
    g_before = model.get_layer("layer2_0_nl_g").kernel.numpy().copy()
    load_weights(model, str(parity.save(plain, tmp_path / "resnet18.pth")))
    assert "non-local-block variables keep" in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_layer("layer2_0_nl_g").kernel.numpy(), g_before)
    np.testing.assert_allclose(model.get_layer("layer3_0_bn2").moving_variance.numpy(),
                               plain["layer3.0.bn2.running_var"].numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(non_local="softmax"), r"non_local='softmax'"),
    (dict(non_local="embedded_gaussian", non_local_blocks=((1,), (1,))),
     r"one entry per stage.*non_local_blocks=\(\(1,\), \(1,\)\)"),
    (dict(non_local="dot_product", non_local_blocks=((1, 0, 0, 0), (), (), ())),
     r"no more entries.*\(3, 4, 6, 3\).*non_local_blocks=\(\(1, 0, 0, 0\)"),
    (dict(non_local="gaussian", non_local_blocks=((), (2,), (), ())), r"0 or 1.*\(2,\)"),
    (dict(non_local="gaussian", non_local_blocks=((), 1, (), ())), r"per stage.*, 1, "),
    (dict(non_local_blocks=((), (1,), (), ())), r"needs non_local"),
])
def test_bad_non_local_arguments_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalResNet("tsm", 50, frames=4, input_shape=(4, 64, 64, 3), **kwargs)


def test_layer_arguments_and_config():
    with pytest.raises(ValueError, match="mode='concatenation'"):
        layers.NonLocalAttention(8, mode="concatenation")
    with pytest.raises(ValueError, match="frames=0"):
        layers.NonLocalAttention(0)
    layer = layers.NonLocalAttention(4, "dot_product", name="a")
    assert layers.NonLocalAttention.from_config(layer.get_config()).get_config() == \
        layer.get_config()


def small(mode, **kwargs):
    """TSM-R18 at width 16; the default placement cut to R18: layer2_0 and layer3_0."""
    model = TemporalResNet("tsm", 18, frames=4, input_shape=(4, 32, 32, 3), classes=5,
                           base_filters=16, non_local=mode, **kwargs)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # a non-zero gamma, so the blocks contribute
        if layer.name.endswith("_nl_bn"):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
    return model


def small_clips(n=2):
    return np.random.default_rng(1).uniform(0, 255, (n, 4, 32, 32, 3)).astype("float32")


@pytest.mark.parametrize("mode", MODES)
def test_keras_file_round_trip(mode, tmp_path):
    model = small(mode)
    assert [l.name for l in model.layers if isinstance(l, layers.NonLocalAttention)] == [
        "layer2_0_nl_attention", "layer3_0_nl_attention"]
    x = small_clips()
    path = tmp_path / "nl.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("layer3_0_nl_attention").mode == mode
    np.testing.assert_array_equal(model(x, training=False).numpy(),
                                  restored(x, training=False).numpy())


def test_partial_bn_keeps_the_non_local_bn_trainable():
    """mmaction2's partial BN freezes BatchNorm2d only; the non-local BN (a BN3d) learns."""
    model = small("embedded_gaussian", partial_bn=True)
    assert model.get_layer("layer2_0_nl_bn").trainable
    assert not model.get_layer("layer2_0_bn1").trainable and model.get_layer("bn1").trainable


def test_jit_compile_predict():
    model = small("embedded_gaussian", classifier_activation=None)
    x = small_clips(4)
    eager = model(x, training=False).numpy()
    model.compile(jit_compile=True)
    # Random-init logits reach ~30: XLA's fusions differ from eager by a few float32 ulps.
    np.testing.assert_allclose(model.predict(x, batch_size=2, verbose=0), eager,
                               atol=1e-5 * max(1.0, np.abs(eager).max()))


def test_float_tflite_uses_builtin_ops_and_equals_keras():
    pytest.importorskip("ai_edge_litert")
    from keras_tin.export import litert
    from keras_tin.export.tflite import convert_tflite
    model = small("embedded_gaussian", classifier_activation=None)
    blob = convert_tflite(model)
    ops = litert.op_names(blob)
    assert "SOFTMAX" in ops and not any(op.startswith(("Flex", "CUSTOM")) for op in ops), ops
    x = small_clips(2)
    want = model(x, training=False).numpy()
    np.testing.assert_allclose(litert.TFLiteModel(blob)(x), want,
                               atol=1e-5 * max(1.0, np.abs(want).max()))
