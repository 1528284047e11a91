"""weights/release.py: publisher's file -> .weights.h5 + sidecar, parity against PyTorch, and
the loader preferring a published conversion."""

import json
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference as tr  # noqa: E402
from keras_tin.applications.temporal_resnet import TemporalResNet  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402
from keras_tin.weights import registry  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import release  # noqa: E402  (weights/release.py; conftest puts weights/ on the path)

SIZE = 32
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def publish(monkeypatch, tmp_path, state, temporal="tin", layout="openmmlab", **fields):
    """A fake manifest record whose 'publisher file' is a checkpoint made here."""
    src = tmp_path / "published.pth"
    torch.save({"state_dict": state}, str(src))
    record = {"name": "fake", "architecture": f"{temporal}_resnet18", "frames": 8,
              "classes": 5, "dataset": "synthetic", "labels": None, "url": src.as_uri(),
              "sha256": None, "sha256_prefix": registry.sha256_of(src)[:8],
              "layout": layout, "normalization": "imagenet", "mean": MEAN.tolist(),
              "std": STD.tolist(), "converted_url": None, "converted_sha256": None}
    record.update(fields)
    monkeypatch.setattr(registry, "_records", lambda: {"fake": record})
    return record, src


def clips(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (2, 8, SIZE, SIZE, 3)).astype("float32")


def torch_logits(ref, x):
    folded = ((x - MEAN) / STD).reshape(-1, SIZE, SIZE, 3).transpose(0, 3, 1, 2)
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(folded))).numpy()


def tiny(temporal="tin", classes=5):
    return TemporalResNet(temporal, 18, frames=8, input_shape=(8, SIZE, SIZE, 3),
                          classes=classes, classifier_activation=None)


def quiet(*args):
    pass


def test_release_writes_weights_and_sidecar_and_the_loader_prefers_them(monkeypatch, tmp_path,
                                                                        capsys):
    ref = tr.randomize(tr.Recognizer("tin", 18, 8, 5), seed=7)
    record, src = publish(monkeypatch, tmp_path, ref.state_dict())
    out = tmp_path / "out"
    sidecar = release.release("fake", str(out), parity_size=SIZE, log=quiet,
                              cache_dir=str(tmp_path / "cache"))
    weights = out / "fake.weights.h5"
    assert weights.is_file()
    assert json.loads((out / "fake.json").read_text()) == sidecar
    assert sidecar["parity"]["checked"] and sidecar["parity"]["passed"]
    assert sidecar["parity"]["max_abs_diff"] < 1e-4
    assert sidecar["converted"]["sha256"] == registry.sha256_of(weights)
    assert sidecar["source"]["sha256"] == registry.sha256_of(src)
    assert sidecar["source"]["sha256"].startswith(record["sha256_prefix"])

    # Published: the loader takes the .weights.h5 and never needs the .pth (or torch).
    record.update(converted_url=weights.as_uri(), converted_sha256=sidecar["converted"]["sha256"])
    src.unlink()
    x = clips()
    model = load_weights(tiny(), "fake", verbose=False, cache_dir=str(tmp_path / "cache2"))
    np.testing.assert_allclose(model.predict(x, verbose=0), torch_logits(ref, x), atol=1e-4)

    # Another class count: the head is dropped, the backbone and TIN modules load.
    model = load_weights(tiny(classes=3), "fake", cache_dir=str(tmp_path / "cache3"))
    assert "5 classes but the model has 3" in capsys.readouterr().out
    np.testing.assert_allclose(
        model.get_layer("layer1_0_conv1").temporal_module.offset_fc1_kernel.numpy(),
        ref.state_dict()["backbone.layer1.0.conv1.conv.net1.offset_net.fc1.weight"].numpy().T)

    # A converted file that is not the published one is refused and leaves the cache.
    record["converted_sha256"] = "ab" * 32
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_weights(tiny(), "fake", verbose=False, cache_dir=str(tmp_path / "cache4"))


@pytest.mark.parametrize("temporal", ["tsm", "tin"])
def test_release_parity_from_the_authors_layout(monkeypatch, tmp_path, temporal):
    """MIT / X-Temporal key names: the reference is loaded through release's own renaming."""
    ref = tr.randomize(tr.Recognizer(temporal, 18, 8, 5), seed=8)
    publish(monkeypatch, tmp_path, tr.to_authors_layout(ref.state_dict()), temporal,
            layout="authors")
    sidecar = release.release("fake", str(tmp_path / "out"), parity_size=SIZE, log=quiet,
                              cache_dir=str(tmp_path / "cache"))
    assert sidecar["parity"]["passed"], sidecar["parity"]


def test_release_refuses_to_pass_a_conversion_that_differs(monkeypatch, tmp_path):
    """The parity check can fail: one perturbed tensor on the PyTorch side is caught."""
    ref = tr.randomize(tr.Recognizer("tin", 18, 8, 5), seed=9)
    publish(monkeypatch, tmp_path, ref.state_dict())
    renamed = release.to_reference_keys

    def perturbed(state_dict, layout):
        keys = renamed(state_dict, layout)
        key = "backbone.layer3.0.conv2.conv.weight"
        keys[key] = keys[key] * 1.01
        return keys

    monkeypatch.setattr(release, "to_reference_keys", perturbed)
    with pytest.raises(RuntimeError, match="parity failed"):
        release.release("fake", str(tmp_path / "out"), parity_size=SIZE, log=quiet,
                        cache_dir=str(tmp_path / "cache"))


def test_release_cli(monkeypatch, tmp_path, capsys):
    ref = tr.randomize(tr.Recognizer("tsn", 18, 8, 5), seed=10)
    _, src = publish(monkeypatch, tmp_path, ref.state_dict(), "tsn")
    out = tmp_path / "out"
    assert release.main(["fake", "--out", str(out), "--source", str(src), "--parity-size",
                         str(SIZE)]) == 0
    assert (out / "fake.weights.h5").is_file() and "1 released, 0 failed" in capsys.readouterr().out
    # A local file that is not the published one fails its hash check.
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not it")
    assert release.main(["fake", "--out", str(out), "--source", str(bad)]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        release.main([])


def test_make_weights_target_runs_the_release_script():
    dry = subprocess.run(["make", "-n", "weights", "NAME=some_record"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "weights/release.py some_record" in dry


def test_readme_model_table_lists_every_record():
    """README's model table (made by `weights/release.py --table`) names every record once,
    with the record's reported accuracy, and a parity measurement for each."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = readme.split("<!-- model-table -->")[1].split("<!-- /model-table -->")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert sorted(names) == registry.list_pretrained()
    for row, name in zip(rows, names):
        record = registry.get_record(name)
        assert f"| {record['top1']}" in row, name
        assert "not measured" not in row, name
        tested_in = release.parity_test_file(record)
        if tested_in:  # families whose parity the suite checks (release.PARITY_IN_TESTS)
            assert tested_in in row and os.path.exists(os.path.join(REPO, tested_in)), name
        else:
            assert "e-0" in row.split("|")[-2], name
