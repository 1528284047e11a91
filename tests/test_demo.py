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
