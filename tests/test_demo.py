"""A short `keras-tin demo` run: temporal models beat chance on direction pairs."""

import json

from keras_tin.cli import main


def test_demo_cli_short_run(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--epochs", "2", "--num-train", "480", "--num-val", "160",
                 "--models", "tin,tsm", "--output-dir", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    best = max(results["tin"]["direction_accuracy"], results["tsm"]["direction_accuracy"])
    assert best > 0.7, results  # chance is 0.5 within a pair
    assert (out / "tin_offsets_weights.png").stat().st_size > 10_000
    assert "direction within pair" in capsys.readouterr().out


def test_demo_rejects_unknown_model():
    import pytest
    with pytest.raises(SystemExit, match="tcn"):
        main(["demo", "--models", "tin,tcn"])


def test_demo_runs_the_zoo_modules_at_their_depth(tmp_path, capsys):
    """`--models tada2d,stm`: TAda2D on the requested ResNet-18, STM (bottleneck-only) at
    its smallest depth, 50; both train and are reported under their names."""
    out = tmp_path / "demo"
    code = main(["demo", "--epochs", "1", "--num-train", "64", "--num-val", "32",
                 "--models", "tada2d,stm", "--output-dir", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "== TAda2D-ResNet-18 ==" in text and "== STM-ResNet-50 ==" in text
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"tada2d", "stm"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results.values())
    assert "| TAda2D |" in (out / "results.md").read_text()
