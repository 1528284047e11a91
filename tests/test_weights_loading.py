"""Manifest, hash-checked download, head dropping, loud key errors, CLI."""

import json
import os

import numpy as np
import pytest

from keras_tin.weights import registry

torch = pytest.importorskip("torch")

import torch_reference as tr  # noqa: E402
from keras_tin.applications.temporal_resnet import TemporalResNet  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402

SHAPE = (8, 32, 32, 3)


def tiny(temporal="tin", classes=5):
    return TemporalResNet(temporal, 18, frames=8, input_shape=SHAPE, classes=classes,
                          classifier_activation=None)


@pytest.fixture(scope="module")
def tin18_state():
    return tr.randomize(tr.Recognizer("tin", 18, 8, 5), seed=4).state_dict()


def save(state, path):
    torch.save({"state_dict": state}, str(path))
    return str(path)


def test_manifest_records_are_complete():
    with open(registry.MANIFEST) as f:
        records = json.load(f)["records"]
    names = {r["name"] for r in records}
    for required in ("tin_resnet50_8f_sthv1_openmmlab", "tin_resnet50_8f_sthv2_openmmlab",
                     "tin_resnet50_8f_kinetics400_openmmlab", "tsm_resnet50_8f_kinetics400_openmmlab",
                     "tsm_resnet50_8f_sthv2_openmmlab", "tsm_resnet50_8f_kinetics400_mit",
                     "tsm_resnet50_8f_sthv2_mit", "resnet50_imagenet_torchvision",
                     "tsm_resnet101_8f_sthv2_openmmlab", "tsm_resnet101_8f_sthv1_mit",
                     "tsm_resnet50_nl_dot_product_8f_kinetics400_openmmlab",
                     "tsm_resnet50_nl_embedded_gaussian_8f_kinetics400_openmmlab",
                     "tsm_resnet50_nl_gaussian_8f_kinetics400_openmmlab",
                     "tsm_mobilenetv2_8f_kinetics400_openmmlab", "tsm_mobilenetv2_8f_kinetics400_mit",
                     "tsn_resnet50_8f_kinetics400_openmmlab", "resnet101_imagenet_torchvision"):
        assert required in names
    fields = {"architecture", "frames", "classes", "dataset", "labels", "url", "sha256",
              "sha256_prefix", "layout", "normalization", "mean", "std", "top1", "protocol",
              "license", "converted_url", "converted_sha256"}
    for r in records:
        assert fields <= set(r), r["name"]
        assert r["layout"] in ("openmmlab", "authors", "torchvision", "tadaconv", "tcpnet", "pytorchvideo", "online",
                               "torchvision_video", "vmz", "mmaction2_r2plus1d")
        assert r["verified_by_us"] is False
        if r["sha256_prefix"] and r["url"]:
            assert r["url"].endswith(f"-{r['sha256_prefix']}.pth"), r["name"]
        # The MIT files moved to hanlab18.mit.edu (TSM commit 2854869, 2023-10).
        assert "//hanlab.mit.edu" not in str(r["url"]), r["name"]
        assert (r["mean"], r["std"]) == {
            "imagenet": ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
            "inception": ([127.5] * 3, [127.5] * 3),
            "tadaconv": ([114.75] * 3, [57.375] * 3),
            "kinetics": ([110.2008, 100.63983, 95.99475], [58.14765, 56.46975, 55.332195]),
        }[r["normalization"]], r["name"]


def test_manifest_corrections_from_the_publishers():
    """What ../shared/weights/WEIGHTS_SOURCES.md found wrong, corrected."""
    get = registry.get_record
    tsm = get("tsm_resnet50_8f_kinetics400_openmmlab")
    assert (tsm["top1"], tsm["top5"]) == (73.18, 90.56)
    assert "TenCrop" in tsm["protocol"] and "short side 256" in tsm["protocol"]
    assert "ThreeCrop 256" in get("tsm_resnet50_8f_sthv2_openmmlab")["protocol"]
    for name in ("tin_resnet50_8f_sthv1_openmmlab", "tin_resnet50_8f_sthv2_openmmlab",
                 "tin_resnet50_8f_kinetics400_openmmlab"):
        assert get(name)["normalization"] == "inception", name  # trained with x/127.5 - 1
        assert get(name + "0x")["normalization"] == "imagenet"
    # Something V1 / Jester: mmaction2 numbers classes in CSV order, MIT and X-Temporal sorted.
    assert get("tin_resnet50_8f_sthv1_openmmlab")["labels"] == "something-something-v1"
    assert get("tin_resnet50_8f_sthv1_xtemporal")["labels"] == "something-something-v1-sorted"
    assert get("tsm_resnet50_8f_sthv1_mit")["labels"] == "something-something-v1-sorted"
    assert get("tsm_resnet50_8f_jester_openmmlab0x")["labels"] == "jester"


def test_every_record_builds_its_model():
    """Each (architecture, non-local) of the manifest builds, with the record's classes."""
    from keras_tin.weights.loading import build_for_record

    seen = set()
    for name in registry.list_pretrained():
        record = registry.get_record(name)
        key = (record["architecture"], record.get("non_local"))
        if key in seen:
            continue
        seen.add(key)
        frames = record["frames"] or 1
        model = build_for_record(record, input_shape=(frames, 64, 64, 3))
        assert model.output_shape == (None, record["classes"]), name
        mean = np.ravel(model.get_layer("normalization").mean.numpy())
        np.testing.assert_allclose(mean, record["mean"], rtol=1e-6)
    assert len(seen) >= 10


def _fake_record(monkeypatch, tmp_path, content, **fields):
    src = tmp_path / "published.pth"
    src.write_bytes(content)
    record = {"name": "fake", "architecture": "tin_resnet18", "frames": 8, "classes": 5,
              "url": src.as_uri(), "sha256": None, "sha256_prefix": None,
              "layout": "openmmlab", "normalization": "imagenet"}
    record.update(fields)
    monkeypatch.setattr(registry, "_records", lambda: {"fake": record})
    return record


def test_download_verifies_prefix_and_caches(monkeypatch, tmp_path):
    content = b"checkpoint bytes"
    actual = __import__("hashlib").sha256(content).hexdigest()
    _fake_record(monkeypatch, tmp_path, content, sha256_prefix=actual[:8])
    path = registry.download("fake", cache_dir=str(tmp_path / "cache"))
    assert path.startswith(str(tmp_path / "cache")) and open(path, "rb").read() == content


@pytest.mark.parametrize("field", ["sha256_prefix", "sha256"])
def test_hash_mismatch_names_both_hashes(monkeypatch, tmp_path, field):
    content = b"tampered bytes"
    actual = __import__("hashlib").sha256(content).hexdigest()
    wrong = "0123abcd" if field == "sha256_prefix" else "ab" * 32
    _fake_record(monkeypatch, tmp_path, content, **{field: wrong})
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as info:
        registry.download("fake", cache_dir=str(cache))
    assert wrong in str(info.value) and actual in str(info.value)
    assert not any(p.is_file() for p in cache.rglob("*"))  # the bad file left the cache


def test_download_failure_says_what_to_do_offline(monkeypatch, tmp_path):
    record = _fake_record(monkeypatch, tmp_path, b"bytes", sha256="ab" * 32)
    record["url"] = (tmp_path / "missing" / "published.pth").as_uri()  # nothing there
    cache = tmp_path / "cache"
    with pytest.raises(ConnectionError) as info:
        registry.download("fake", cache_dir=str(cache))
    message = str(info.value)
    assert "'fake'" in message and record["url"] in message and "weights=<path>" in message
    assert str(cache / registry.CACHE_SUBDIR / "published.pth") in message


def test_default_cache_path_is_where_get_file_writes(tmp_path):
    """With no cache_dir, the path in messages (and removed after a bad hash) is get_file's."""
    import keras

    src = tmp_path / "w.pth"
    src.write_bytes(b"x")
    got = keras.utils.get_file("keras_tin_cache_probe.pth", origin=src.as_uri(),
                               cache_subdir=registry.CACHE_SUBDIR)
    try:
        assert registry._cache_path(None, "keras_tin_cache_probe.pth") == got
    finally:
        os.remove(got)


def test_unverified_record_is_refused_unless_allowed(monkeypatch, tmp_path):
    _fake_record(monkeypatch, tmp_path, b"no hash published")
    monkeypatch.delenv(registry.ALLOW_UNVERIFIED_ENV, raising=False)
    with pytest.raises(ValueError, match="cannot be verified"):
        registry.download("fake", cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match="unverified"):
        registry.download("fake", cache_dir=str(tmp_path / "c"), allow_unverified=True)


def test_manifest_name_loads_through_download(monkeypatch, tmp_path, tin18_state):
    ckpt = tmp_path / "src.pth"
    save(tin18_state, ckpt)
    digest = registry.sha256_of(ckpt)
    _fake_record(monkeypatch, tmp_path, ckpt.read_bytes(), sha256=digest)
    model = load_weights(tiny(), "fake", verbose=False, cache_dir=str(tmp_path / "cache"))
    np.testing.assert_allclose(model.get_layer("fc").kernel.numpy(),
                               tin18_state["cls_head.fc_cls.weight"].numpy().T)


def test_normalization_mismatch_warns(monkeypatch, tmp_path, tin18_state):
    ckpt = tmp_path / "src.pth"
    save(tin18_state, ckpt)
    _fake_record(monkeypatch, tmp_path, ckpt.read_bytes(), sha256=registry.sha256_of(ckpt),
                 normalization="inception")
    with pytest.warns(UserWarning, match="normalised as 'inception'"):
        load_weights(tiny(), "fake", verbose=False, cache_dir=str(tmp_path / "cache"))


def test_constructor_takes_the_records_normalization(monkeypatch, tmp_path, tin18_state):
    """normalization="auto" (the default) builds a pretrained TIN with the normalisation
    its publisher trained it with: x/127.5 - 1 for the mmaction2 v1.0 TIN files."""
    ckpt = tmp_path / "src.pth"
    save(tin18_state, ckpt)
    _fake_record(monkeypatch, tmp_path, ckpt.read_bytes(), sha256=registry.sha256_of(ckpt),
                 normalization="inception")
    import functools
    import warnings
    monkeypatch.setattr(registry, "download", functools.partial(
        registry.download, cache_dir=str(tmp_path / "cache")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no normalisation-mismatch warning
        model = TemporalResNet("tin", 18, frames=8, input_shape=SHAPE, classes=5,
                               weights="fake")
    np.testing.assert_allclose(np.ravel(model.get_layer("normalization").mean.numpy()), 127.5)
    assert np.ravel(tiny().get_layer("normalization").mean.numpy())[0] == 123.675


def test_non_local_record_refuses_a_plain_model(monkeypatch, tmp_path):
    _fake_record(monkeypatch, tmp_path, b"unused", sha256="ab" * 32, non_local="dot_product")
    with pytest.raises(ValueError, match="non_local='dot_product'"):
        load_weights(tiny("tsm"), "fake", cache_dir=str(tmp_path / "c"))


def test_class_count_mismatch_drops_head_keeps_backbone(tmp_path, tin18_state, capsys):
    model = tiny(classes=3)
    before = model.get_layer("fc").kernel.numpy().copy()
    load_weights(model, save(tin18_state, tmp_path / "c.pth"))
    assert "5 classes but the model has 3" in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_layer("fc").kernel.numpy(), before)
    np.testing.assert_allclose(model.get_layer("conv1").kernel.numpy(),
                               tin18_state["backbone.conv1.conv.weight"].numpy().transpose(2, 3, 1, 0))
    tin = model.get_layer("layer1_0_conv1").temporal_module
    np.testing.assert_allclose(
        tin.offset_fc1_kernel.numpy(),
        tin18_state["backbone.layer1.0.conv1.conv.net1.offset_net.fc1.weight"].numpy().T)


def test_missing_and_unmapped_keys_are_listed(tmp_path, tin18_state):
    state = dict(tin18_state)
    del state["backbone.layer2.1.conv2.bn.running_var"]
    model = tiny()
    before = model.get_layer("conv1").kernel.numpy().copy()
    with pytest.raises(ValueError, match=r"layer2_1_bn2/moving_variance") as info:
        load_weights(model, save(state, tmp_path / "missing.pth"))
    assert "nothing was loaded" in str(info.value)
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), before)
    state = dict(tin18_state)
    state["backbone.layer1.0.extra.weight"] = torch.zeros(3)
    state["neck.fc.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="Unmapped keys") as info:
        load_weights(tiny(), save(state, tmp_path / "extra.pth"))
    assert "backbone.layer1.0.extra.weight" in str(info.value)
    assert "neck.fc.weight" in str(info.value)


def test_wrong_temporal_module_is_refused(tmp_path, tin18_state):
    with pytest.raises(ValueError, match="TIN network"):
        load_weights(tiny("tsm"), save(tin18_state, tmp_path / "tin.pth"))
    tsn = tr.randomize(tr.Recognizer("tsn", 18, 8, 5)).state_dict()
    # TSM has no parameters, so only the key names tell a TSN checkpoint from a TSM one.
    with pytest.raises(ValueError, match="TSN network"):
        load_weights(tiny("tsm"), save(tsn, tmp_path / "tsn.pth"))


def test_torchvision_backbone_initialises_tin(tmp_path, tin18_state, capsys):
    # A plain torchvision ResNet-18 (names as in torchvision), 1000 classes.
    tsn = tr.to_authors_layout(tr.randomize(tr.Recognizer("tsn", 18, 8, 1000), 5).state_dict())
    plain = {k[len("module.base_model."):]: v for k, v in tsn.items() if "base_model" in k}
    plain.update({"fc." + k.split(".")[-1]: v for k, v in tsn.items() if "new_fc" in k})
    model = tiny("tin")
    offsets_before = model.get_layer("layer1_0_conv1").temporal_module.offset_fc2_bias.numpy()
    load_weights(model, save(plain, tmp_path / "resnet18.pth"))
    out = capsys.readouterr().out
    assert "1000 classes" in out and "temporal-module variables keep" in out
    np.testing.assert_allclose(model.get_layer("layer4_1_bn2").moving_variance.numpy(),
                               plain["layer4.1.bn2.running_var"].numpy())
    np.testing.assert_array_equal(
        model.get_layer("layer1_0_conv1").temporal_module.offset_fc2_bias.numpy(), offsets_before)


def test_cli_convert_roundtrip(tmp_path, tin18_state):
    from keras_tin import cli
    src = save(tin18_state, tmp_path / "tin18.pth")
    out = tmp_path / "tin18.weights.h5"
    assert cli.main(["convert", src, str(out), "--arch", "tin_resnet18", "--frames", "8",
                     "--classes", "5"]) == 0
    model = TemporalResNet("tin", 18, frames=8, classes=5)
    model.load_weights(str(out))
    np.testing.assert_allclose(model.get_layer("fc").bias.numpy(),
                               tin18_state["cls_head.fc_cls.bias"].numpy())
    assert cli.main(["convert", src, str(tmp_path / "x.weights.h5"), "--arch", "tsm_resnet18"]) == 1


def test_checkpoint_without_classifier_says_so(tmp_path, tin18_state, capsys):
    """A backbone-only checkpoint into a model with a classifier: loaded, and announced."""
    state = {k: v for k, v in tin18_state.items() if not k.startswith("cls_head.")}
    model = tiny()
    before = model.get_layer("fc").kernel.numpy().copy()
    load_weights(model, save(state, tmp_path / "headless.pth"))
    assert "checkpoint has no classifier" in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_layer("fc").kernel.numpy(), before)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_files_with_another_class_count_drop_the_head(tmp_path, suffix, capsys):
    """README: a file with another class count loads everything but the classifier."""
    source = tiny(classes=7)
    path = str(tmp_path / f"source{suffix}")
    (source.save_weights if suffix == ".weights.h5" else source.save)(path)
    model = TemporalResNet("tin", 18, frames=8, input_shape=SHAPE, classes=3, weights=path,
                           classifier_activation=None)
    assert "7 classes but the model has 3" in capsys.readouterr().out
    for layer in ("conv1", "layer4_1_bn2", "layer2_0_conv1"):
        for a, b in zip(model.get_layer(layer).weights, source.get_layer(layer).weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Same class count: an exact load.
    same = TemporalResNet("tin", 18, frames=8, input_shape=SHAPE, classes=7, weights=path,
                          classifier_activation=None)
    np.testing.assert_array_equal(same.get_layer("fc").kernel.numpy(),
                                  source.get_layer("fc").kernel.numpy())


def test_registry_inputs_give_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(TypeError, match="weights=123 of type int"):
        load_weights(tiny(), 123)
    with pytest.raises(ValueError, match="is a directory"):
        load_weights(tiny(), str(tmp_path))
    _fake_record(monkeypatch, tmp_path, b"bytes", sha256="ab" * 32)
    a_file = tmp_path / "not_a_dir"
    a_file.write_bytes(b"")
    with pytest.raises(ValueError, match="cache_dir must be a directory"):
        registry.download("fake", cache_dir=str(a_file))
    cache = tmp_path / "cache"
    (cache / registry.CACHE_SUBDIR / "published.pth").mkdir(parents=True)
    with pytest.raises(ValueError, match="cache entry .* is a directory"):
        registry.download("fake", cache_dir=str(cache))


def test_tensor_of_the_wrong_rank_is_a_listed_mismatch(tmp_path, tin18_state):
    """A 2-D tensor where a conv kernel belongs: listed as a shape mismatch, not NumPy's
    'axes don't match array'."""
    state = dict(tin18_state)
    state["backbone.layer1.0.conv2.conv.weight"] = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"shape mismatches.*layer1\.0\.conv2.*\(3, 4\)"):
        load_weights(tiny(), save(state, tmp_path / "rank.pth"))
