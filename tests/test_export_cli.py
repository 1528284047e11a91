"""`keras-tin export`: writes the file, prints its size and the TFLite op list."""

import numpy as np
import pytest

from keras_tin import cli
from keras_tin.export.calibration import iter_clips


def test_cli_tflite_prints_size_and_ops(tmp_path, capsys):
    out = tmp_path / "tsn.tflite"
    rc = cli.main(["export", "--model", "TSNMobileNetV2", "--frames", "2", "--size", "32",
                   "--classes", "3", "--format", "tflite", "--output", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"{out.stat().st_size} bytes" in printed
    ops_line = next(line for line in printed.splitlines() if line.startswith("ops: "))
    assert "CONV_2D" in ops_line and "DEPTHWISE_CONV_2D" in ops_line
    assert "Flex" not in ops_line


def test_cli_rejects_unknown_model(tmp_path):
    with pytest.raises(SystemExit, match="--model"):
        cli.main(["export", "--model", "VGG16", "--output", str(tmp_path / "x.tflite")])


def test_calibration_accepts_clips_batches_and_labelled_batches():
    shape = (2, 8, 8, 3)
    single = [np.ones(shape)] * 3
    batches = [np.ones((4,) + shape)]
    labelled = [(np.ones((2,) + shape), np.zeros(2))] * 3  # like load_dataset's (clips, labels)
    assert len(list(iter_clips(single, shape))) == 3
    assert len(list(iter_clips(batches, shape))) == 4
    got = list(iter_clips(labelled, shape, max_clips=5))
    assert len(got) == 5 and got[0].shape == (1,) + shape and got[0].dtype == np.float32


def test_calibration_rejects_wrong_clip_shape():
    with pytest.raises(ValueError, match="shape"):
        list(iter_clips([np.ones((3, 8, 8, 3))], (2, 8, 8, 3)))
