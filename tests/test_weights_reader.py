"""The torch-free .pth reader: formats, dtypes, and refusing code in pickles."""

import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from keras_tin.weights import pth_reader

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_tensors_exactly(tmp_path, legacy):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = collections.OrderedDict(
        f32=torch.randn(3, 5), f64=torch.randn(2, dtype=torch.float64),
        f16=torch.randn(4).half(), bf16=torch.randn(4).bfloat16(),
        i64=torch.tensor([1, -2, 3]), u8=torch.tensor([0, 255], dtype=torch.uint8),
        flag=torch.tensor([True, False]), scalar=torch.tensor(7),
        transposed=base.t(), sliced=base[1:3, 2:5],  # views share one storage
        param=torch.nn.Parameter(torch.ones(2, 2)))
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 3, "name": "x"}}, str(path),
               _use_new_zipfile_serialization=not legacy)
    out = pth_reader.read_checkpoint(path)
    assert out["meta"] == {"epoch": 3, "name": "x"}
    got = out["state_dict"]
    assert list(got) == list(state)
    for key, tensor in state.items():
        want = tensor.detach().float().numpy() if key == "bf16" else tensor.detach().numpy()
        assert got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        assert got[key].dtype == want.dtype, key
    # The same result as torch's own loader.
    via_torch = pth_reader.read_checkpoint(path, use_torch=True)["state_dict"]
    np.testing.assert_array_equal(via_torch["transposed"], got["transposed"])


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious_zip(path, marker):
    payload = pickle.dumps({"state_dict": {"w": _Evil(f"touch {marker}")}}, protocol=2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")


def _malicious_legacy(path, marker):
    buf = io.BytesIO()
    for obj in (pth_reader.LEGACY_MAGIC, 1001, {"little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    pickle.dump(_Evil(f"touch {marker}"), buf, protocol=2)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("writer", [_malicious_zip, _malicious_legacy])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    writer(path, marker)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|nt.system"):
        pth_reader.read_checkpoint(path)
    assert not marker.exists()


def test_refuses_other_globals(tmp_path):
    payload = pickle.dumps({"w": collections.Counter("ab")}, protocol=2)  # harmless, not allowed
    path = tmp_path / "c.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        pth_reader.read_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(pickle.dumps(123, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="magic"):
        pth_reader.read_checkpoint(path)


def test_extract_state_dict_unwraps_and_rejects():
    arr = np.zeros(2)
    assert list(pth_reader.extract_state_dict({"state_dict": {"a": arr}, "meta": {}})) == ["a"]
    assert list(pth_reader.extract_state_dict({"a": arr})) == ["a"]
    with pytest.raises(ValueError, match="not tensors"):
        pth_reader.extract_state_dict({"a": arr, "b": "text"})
