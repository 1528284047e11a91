"""Online (streaming) TSM: the causal shift, the step model unrolled from the offline model,
the MIT online-demo checkpoint layout, TFLite export of the step model and `keras-tin
stream` on an encoded video."""

import os
import sys

import keras
import numpy as np
import pytest
import torch

from keras_tin.applications.mobilenet_v2 import TSMMobileNetV2
from keras_tin.layers.online_shift import OnlineTemporalShift
from keras_tin.layers.temporal_conv import TemporalConv2D
from keras_tin.streaming import MITDemoSmoother
from keras_tin.streaming import build_step_model
from keras_tin.streaming import offline_frame_logits
from keras_tin.streaming import run_clip
from keras_tin.streaming import state_spec
from keras_tin.weights import convert

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "weights"))
import torch_reference_online_tsm as ref  # noqa: E402
from torch_reference_mobilenet import randomize  # noqa: E402

MEAN = np.array([123.675, 116.28, 103.53], "float32")
STD = np.array([58.395, 57.12, 57.375], "float32")


def _clips(rng, shape):
    """Random clips of coarse blocks: iid pixel noise averages out under global pooling,
    so every frame would give nearly the same logits."""
    *lead, h, w, c = shape
    coarse = rng.uniform(0, 255, tuple(lead) + (4, 4, c))
    fine = np.repeat(np.repeat(coarse, -(-h // 4), axis=-3), -(-w // 4), axis=-2)
    return fine[..., :h, :w, :].astype("float32")


def _reference(classes, clip, seed=0):
    torch.manual_seed(seed)
    net = ref.OnlineMobileNetV2(classes)
    frames = torch.from_numpy(((clip - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    randomize(net, seed=seed, calibrate_with=frames)
    return net, frames


@pytest.fixture(scope="module")
def small_online():
    """An online TSM MobileNetV2 on 32 px frames holding the weights of the PyTorch
    reference, randomised with BN statistics measured on clips and then perturbed (random
    BN statistics alone wash the input out over MobileNetV2's depth)."""
    rng = np.random.default_rng(1)
    net, _ = _reference(5, _clips(rng, (8, 32, 32, 3)), seed=1)
    model = TSMMobileNetV2(frames=4, input_shape=(4, 32, 32, 3), classes=5, online=True)
    convert.assign_state_dict(model, {k: v.numpy() for k, v in net.state_dict().items()},
                              verbose=False)
    return model


def test_online_shift_is_causal_and_fuses():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * 3, 4, 4, 16)).astype("float32")
    got = keras.ops.convert_to_numpy(OnlineTemporalShift(3, 8)(x))
    v = x.reshape(2, 3, 4, 4, 16)
    want = v.copy()
    want[:, 0, ..., :2] = 0
    want[:, 1:, ..., :2] = v[:, :-1, ..., :2]
    np.testing.assert_array_equal(got, want.reshape(x.shape))
    fused = TemporalConv2D(8, 1, temporal_module=OnlineTemporalShift(3, 8), fuse=True)
    plain = TemporalConv2D(8, 1, temporal_module=OnlineTemporalShift(3, 8), fuse=False)
    fused.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(fused.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(x)),
                               keras.ops.convert_to_numpy(plain(x)), atol=1e-5)
    with pytest.raises(ValueError, match="online=True needs temporal='tsm'"):
        keras.applications  # noqa: B018
        from keras_tin.applications.mobilenet_v2 import TINMobileNetV2
        TINMobileNetV2(frames=2, input_shape=(32, 32, 3), online=True)


def test_step_model_equals_offline_frame_by_frame(small_online):
    step_model = build_step_model(small_online)
    spec = state_spec(step_model)
    assert [name for name, _ in spec] == [f"state_block{i}" for i in
                                          (2, 4, 5, 7, 8, 9, 11, 12, 14, 15)]
    assert all(len(t.shape) <= 4 for t in step_model.inputs + step_model.outputs)
    rng = np.random.default_rng(2)
    clips = _clips(rng, (2, 4, 32, 32, 3))
    offline = offline_frame_logits(small_online, clips)
    assert np.abs(offline[:, 1:] - offline[:, :1]).max() > 1e-3  # frames differ
    for b in range(2):
        online, _ = run_clip(step_model, clips[b])
        np.testing.assert_allclose(online, offline[b], atol=1e-5)
    # causal: changing the last frame leaves the earlier per-frame outputs alone
    changed = clips.copy()
    changed[:, -1] = 255 - changed[:, -1]
    again = offline_frame_logits(small_online, changed)
    np.testing.assert_allclose(again[:, :-1], offline[:, :-1], atol=1e-5)
    assert np.abs(again[:, -1] - offline[:, -1]).max() > 1e-4


def test_offline_tsm_is_refused():
    model = TSMMobileNetV2(frames=2, input_shape=(2, 32, 32, 3), classes=3, alpha=0.35)
    with pytest.raises(ValueError, match="bi-directional TemporalShift"):
        build_step_model(model)


def test_online_checkpoint_matches_torch_reference(tmp_path):
    rng = np.random.default_rng(3)
    clip = _clips(rng, (4, 64, 64, 3))
    net, frames = _reference(27, clip)
    want = ref.run_frames(net, frames[:, None]).numpy()[:, 0]
    assert np.abs(want[1:] - want[:-1]).max() > 1e-2
    path = str(tmp_path / "mobilenetv2_jester_online.pth.tar")
    torch.save(net.state_dict(), path)  # the release is a bare state dict
    model = TSMMobileNetV2(frames=4, input_shape=(4, 64, 64, 3), classes=27, online=True,
                           weights=path)
    step_model = build_step_model(model)
    got, _ = run_clip(step_model, clip)
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(offline_frame_logits(model, clip[None])[0], want, atol=1e-4)
    from keras_tin.cli import main
    out = str(tmp_path / "online.weights.h5")
    assert main(["convert", path, out, "--arch", "tsm_mobilenetv2", "--layout", "online",
                 "--frames", "4"]) == 0
    model.load_weights(out)
    np.testing.assert_allclose(run_clip(build_step_model(model), clip)[0], want, atol=1e-4)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    offline = TSMMobileNetV2(frames=4, input_shape=(4, 64, 64, 3), classes=27)
    with pytest.raises(ValueError, match="online"):
        convert.assign_state_dict(offline, state, verbose=False)


def test_full_size_state_matches_the_demo_buffers():
    model = TSMMobileNetV2(frames=8, classes=27, online=True)  # 224 px
    spec = state_spec(build_step_model(model))
    # online_demo/main.py buffers (NCHW) -> NHWC
    demo = [(3, 56), (4, 28), (4, 28), (8, 14), (8, 14), (8, 14), (12, 14), (12, 14),
            (20, 7), (20, 7)]
    assert [shape for _, shape in spec] == [(1, s, s, c) for c, s in demo]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A narrow online model trained a step with model.fit, saved as .keras: (model, path)."""
    keras.utils.set_random_seed(4)
    model = TSMMobileNetV2(frames=4, input_shape=(4, 32, 32, 3), classes=5, online=True,
                           alpha=0.35, dropout_rate=0.0)
    rng = np.random.default_rng(4)
    clips = _clips(rng, (4, 4, 32, 32, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy",
                  jit_compile=False)  # XLA compiling the step would take longer than it
    before = model.get_layer("block2_expand").get_weights()[0].copy()
    model.fit(clips, np.array([0, 1, 2, 3]), epochs=1, batch_size=4, verbose=0)
    assert np.abs(model.get_layer("block2_expand").get_weights()[0] - before).max() > 0
    path = str(tmp_path_factory.mktemp("online") / "online.keras")
    model.save(path)
    with open(os.path.join(os.path.dirname(path), "labels.txt"), "w") as f:
        f.write("\n".join(f"class_{i}" for i in range(5)) + "\n")
    return model, path


def test_trained_online_model_unrolls(trained):
    model, path = trained
    clips = _clips(np.random.default_rng(7), (1, 4, 32, 32, 3))
    step_model = build_step_model(keras.saving.load_model(path))
    got, _ = run_clip(step_model, clips[0])
    np.testing.assert_allclose(got, offline_frame_logits(model, clips)[0], atol=1e-5)


def test_tflite_step_model_float_and_int8(trained, tmp_path, capsys):
    from keras_tin.export.litert import op_names
    from keras_tin.streaming.tflite import TFLiteStepModel
    from keras_tin.streaming.tflite import convert_step_tflite

    step_model = build_step_model(trained[0])
    rng = np.random.default_rng(5)
    clip = _clips(rng, (4, 32, 32, 3))
    want, _ = run_clip(step_model, clip)
    # keras-tin stream --export-tflite writes the float step file, then streams with it
    from keras_tin.cli import main
    video = _write_video(str(tmp_path / "clip.avi"), frames=3)
    float_file = tmp_path / "step.tflite"
    assert main(["stream", video, "--weights", trained[1], "--export-tflite",
                 str(float_file)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"Wrote {float_file} (float32 step model")
    assert sum(line.startswith("frame ") and "class_" in line for line in lines) == 3
    runner = TFLiteStepModel(str(float_file))
    assert all(len(s) <= 4 for s in runner.state_shapes.values())
    assert runner.state_names[0] == "state_block2" and runner.frame_shape == (1, 32, 32, 3)
    got = np.stack([runner.step(frame) for frame in clip])
    np.testing.assert_allclose(got, want, atol=1e-4)
    runner.reset()
    np.testing.assert_allclose(runner.step(clip[0]), want[0], atol=1e-4)
    data = convert_step_tflite(step_model, "int8", list(clip) * 2)
    ops = op_names(data, delegate=False)
    assert "CONV_2D" in ops and not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)
    quantized = TFLiteStepModel(data)
    out = np.stack([quantized.step(frame) for frame in clip])
    assert out.shape == want.shape and np.isfinite(out).all()
    assert np.abs(out - want).max() < 0.5 * np.abs(want).max() + 1e-3


def test_mit_demo_smoothing():
    def feed(indices):
        s = MITDemoSmoother(history_logits=1)
        return [s.update(np.eye(27)[i]) for i in indices]
    # a new class is accepted only when the last two outputs agree
    assert feed([2, 16, 16, 16]) == [2, 16, 16, 16]
    assert feed([16, 16]) == [2, 16]  # the initial history [2] has no second entry
    assert feed([2, 2, 16, 17, 17]) == [2, 2, 16, 16, 17]
    # masked classes keep the previous output; 0 (other things) becomes 2 (no gesture)
    assert feed([2, 2, 7, 0, 3]) == [2, 2, 2, 2, 2]
    # the logit history: the sum over the last 12 frames decides
    s = MITDemoSmoother()
    outs = [s.update(np.eye(27)[16] * 5)] + [s.update(np.eye(27)[17]) for _ in range(3)]
    assert outs == [2, 16, 16, 16]


def _write_video(path, frames=6):
    """A real encoded video (MJPEG in AVI), 48 x 40 random frames."""
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 40))
    assert writer.isOpened()
    rng = np.random.default_rng(6)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    writer.release()
    return path


def test_stream_cli_on_encoded_video(tmp_path, trained, capsys):
    import cv2

    from keras_tin.cli import main

    video = _write_video(str(tmp_path / "clip.avi"))
    model, model_path = trained
    out_video = str(tmp_path / "out.mp4")
    code = main(["stream", video, "--weights", model_path, "--top-k", "2", "--output",
                 out_video])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    frames = [line for line in printed if line.startswith("frame ")]
    assert len(frames) == 6 and all("fps" in line and "class_" in line for line in frames)
    assert printed[-1].startswith("6 frames processed (6 read)")
    # the printed top-1 of frame t is the step model's (window 1: plain softmax)
    from keras_tin.commands.stream import preprocess
    capture = cv2.VideoCapture(video)
    step_model = build_step_model(model)
    decoded = [capture.read()[1] for _ in range(6)]
    logits, _ = run_clip(step_model, np.stack([preprocess(f, (32, 32)) for f in decoded]))
    for line, row in zip(frames, logits):
        assert line.split("fps  ")[1].startswith(f"class_{int(row.argmax())} ")
    annotated = cv2.VideoCapture(out_video)
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert main(["stream", video, "--weights", model_path, "--window", "0"]) == 1


def test_train_online_flag_builds_the_online_model():
    import argparse

    from keras_tin.training.config import TrainConfig
    from keras_tin.training.config import add_config_arguments
    from keras_tin.training.config import config_from_args
    from keras_tin.training.trainer import build_model

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = config_from_args(parser.parse_args(
        ["--arch", "tsm_mobilenetv2", "--online", "--frames", "2", "--image-size", "32"]))
    assert config.online is True
    model = build_model(config, num_classes=3, compile=False)
    assert [name for name, _ in state_spec(build_step_model(model))][0] == "state_block2"
    with pytest.raises(ValueError, match="online=True .* needs arch='tsm_mobilenetv2'.*"
                                         "tsm_resnet50"):
        TrainConfig(arch="tsm_resnet50", online=True)
