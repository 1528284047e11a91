"""Every example in examples/ runs end to end with --smoke on a tiny dataset in its layout."""

import json
import os
import runpy

import numpy as np
import pytest

import training_layouts

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, root, out, *extra):
    module = runpy.run_path(os.path.join(EXAMPLES, f"{name}.py"))  # not as __main__
    return module["run_example"](module["RECIPE"], name,
                                 ["--smoke", "--root", str(root), "--output-dir", str(out),
                                  *extra])


@pytest.mark.parametrize("name", sorted(training_layouts.LAYOUTS))
def test_example_smoke(name, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    training_layouts.LAYOUTS[name](str(root))
    out = tmp_path / "run"
    # what differs between examples is the data layout and the recipe; the TIN model itself
    # runs in own_videos (and in test_training_workflows), TSM (no parameters, fast to
    # build) elsewhere, to keep this file within the CPU test budget
    temporal = "tin" if name == "own_videos" else "tsm"
    result, metrics = run_example(name, root, out, "--temporal", temporal)
    assert result.model.name == f"{temporal}_resnet18"
    # one finished epoch, its checkpoint, the logs and a model evaluate/predict can load
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"][0])
    assert (out / "checkpoints" / "epoch_001.weights.h5").is_file()
    assert (out / "model.keras").is_file() and (out / "log.csv").is_file()
    assert not (out / "backup").exists()  # removed after a finished run
    labels = (out / "labels.txt").read_text().split("\n")
    assert len([l for l in labels if l]) == result.model.output_shape[-1]
    config = json.loads((out / "config.json").read_text())
    assert config["depth"] == 18 and config["lr"] == 0.005 and config["weight_decay"] == 5e-4
    if name == "mmit":
        # multi-label: sigmoid head, binary cross-entropy, mAP
        assert result.model.get_layer("predictions").activation.__name__ == "sigmoid"
        assert result.model.loss.__class__.__name__ == "BinaryCrossentropy"
        assert 0.0 <= metrics["mAP"] <= 1.0 and "top1" not in metrics
    else:
        assert result.model.get_layer("predictions").activation.__name__ == "softmax"
        # top-5 only where it can fail (more than 5 classes)
        assert 0.0 <= metrics["top1"] <= metrics.get("top5", 1.0) <= 1.0
        assert ("top5" in metrics) == (result.model.output_shape[-1] > 5)
        assert (out / "confusion_matrix.png").stat().st_size > 1000
    if name in ("something_v1", "something_v2", "jester"):
        assert config["dataset"].startswith(("something", "jester"))
