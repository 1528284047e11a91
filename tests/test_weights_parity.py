"""Converted PyTorch checkpoints give the PyTorch logits (weights/torch_reference.py)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_reference as tr  # noqa: E402
from keras_tin.applications.temporal_resnet import TemporalResNet  # noqa: E402
from keras_tin.weights import load_weights  # noqa: E402

FRAMES, SIZE, CLASSES, CLIPS = 8, 48, 7, 2
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
TOL = 1e-4


def clips(seed=0, size=SIZE):
    """Frames with a colour and a moving gradient that change per clip and per frame (pure
    noise averages out in the pooled features and would make every clip look alike)."""
    rng = np.random.RandomState(seed)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(ramp, ramp, indexing="ij")
    colour = rng.uniform(40, 215, (CLIPS, FRAMES, 1, 1, 3))
    angle = rng.uniform(0, 2 * np.pi, (CLIPS, 1, 1, 1, 1)) + np.linspace(0, 1.5, FRAMES)[
        None, :, None, None, None]
    wave = 60 * np.sin(3 * (np.cos(angle) * xx[..., None] + np.sin(angle) * yy[..., None]))
    noise = rng.normal(0, 10, (CLIPS, FRAMES, size, size, 3))
    return np.clip(colour + wave + noise, 0, 255).astype(np.float32)


def torch_logits(ref, x):
    # The Keras model normalises inside; the reference gets normalised, folded NCHW frames.
    folded = ((x - MEAN) / STD).reshape((-1,) + x.shape[2:]).transpose(0, 3, 1, 2)
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(folded))).numpy()


def save(state_dict, path, legacy=False):
    torch.save({"state_dict": state_dict, "meta": {"epoch": 40}}, str(path),
               _use_new_zipfile_serialization=not legacy)
    return path


def keras_model(temporal, depth):
    return TemporalResNet(temporal, depth, frames=FRAMES, input_shape=(FRAMES, SIZE, SIZE, 3),
                          classes=CLASSES, classifier_activation=None)


# (temporal, depth): each model is built once and loaded from both key layouts, with
# different random weights per layout so the second load must overwrite everything.
# ResNet-101: the TSM reference shifts every other block (the published n_round = 2); TIN
# keeps a module in all 33 blocks.
# Every temporal kind and depth of the manifest's records is covered.
CASES = [("tin", 50), ("tsm", 50), ("tsn", 18), ("tin", 18), ("tsm", 101), ("tin", 101),
         ("tsn", 50), ("tsn", 101)]


@pytest.mark.parametrize("temporal,depth", CASES)
def test_converted_logits_match_pytorch(temporal, depth, tmp_path):
    model = keras_model(temporal, depth)
    x = clips()
    for seed, layout in ((1, "openmmlab"), (2, "authors")):
        ref = tr.randomize(tr.Recognizer(temporal, depth, FRAMES, CLASSES), seed=seed)
        state = ref.state_dict()
        if layout == "authors":
            state = tr.to_authors_layout(state)
            assert any(k.startswith("module.base_model.") for k in state)
        # openmmlab: zip serialisation; authors: the legacy format of the 2019 releases.
        path = save(state, tmp_path / f"{layout}.pth", legacy=(layout == "authors"))
        load_weights(model, str(path), verbose=False)
        want = torch_logits(ref, x)
        got = np.asarray(model.predict(x, verbose=0))
        err = np.abs(got - want).max()
        print(f"{temporal}-R{depth} {layout}: max |keras - torch| = {err:.2e}, "
              f"max |logit| = {np.abs(want).max():.3f}")
        assert err < TOL, (layout, err)
        # The comparison can fail: the clips give distinct logits, and reversing time changes
        # the reference's output for the temporal models by more than the tolerance.
        assert np.abs(want[0] - want[1]).max() > 30 * TOL
        if temporal != "tsn":
            reversed_time = torch_logits(ref, x[:, ::-1].copy())
            assert np.abs(reversed_time - want).max() > 3 * TOL


def test_parity_at_8_frames_with_tin_offsets_far_from_zero(tmp_path):
    """Offsets near +-2 frames (the reach of the tent kernel) still convert exactly."""
    ref = tr.randomize(tr.Recognizer("tin", 18, FRAMES, CLASSES), seed=3)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("offset_net.fc2.bias"):
                p.copy_(torch.tensor([3.0, -2.5]))  # sigmoid -> offsets ~ +1.8, -1.7
    model = keras_model("tin", 18)
    load_weights(model, str(save(ref.state_dict(), tmp_path / "tin.pth")), verbose=False)
    x = clips(5)
    err = np.abs(np.asarray(model.predict(x, verbose=0)) - torch_logits(ref, x)).max()
    assert err < TOL, err


def test_tsm_resnet101_checkpoint_that_shifts_every_block_is_refused(tmp_path):
    """A TSM-R101 checkpoint whose shifts sit elsewhere than the model's must not load
    silently: the shift has no weights, so only the key names tell where it sits."""
    ref = tr.randomize(tr.Recognizer("tsm", 101, FRAMES, CLASSES), seed=6)
    state = ref.state_dict()
    # Rename the unshifted blocks' conv1 keys as if they were shifted (every block shifts).
    every_block = {k.replace(".conv1.conv.weight", ".conv1.conv.net.weight")
                   if k.startswith("backbone.layer") else k: v for k, v in state.items()}
    assert len(every_block) == len(state)
    model = keras_model("tsm", 101)
    with pytest.raises(ValueError, match=r"shifts other blocks.*layer1\.1"):
        load_weights(model, str(save(every_block, tmp_path / "every.pth")), verbose=False)
