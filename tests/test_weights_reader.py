"""The torch-free .pth reader: formats, dtypes, refusing code in pickles, and hostile or
malformed files (built by hand in tests/pth_craft.py) refused with one clear error."""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from keras_tin.weights import pth_reader
from pth_craft import (NP_SCALAR, Build, Call, Global, PersId, Raw, Storage, dumps,
                       float_bytes, np_dtype, tensor, write_legacy, write_zip)

try:
    import torch
except ImportError:  # the crafted-file tests need no torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="needs PyTorch")
CheckpointError = pth_reader.CheckpointError
GOOD_W = [1.5, -2.0, 3.25, 4.0]
GOOD_B = [0.5, -0.125]


def _refused(path, match, **kwargs):
    """read_checkpoint(path) raises CheckpointError: one line naming the file."""
    with pytest.raises(CheckpointError, match=match) as info:
        pth_reader.read_checkpoint(path, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    return message


def _state(legacy=False, w=None):
    w = w or tensor(Storage("FloatStorage", "0", 4, legacy=legacy), 0, (2, 2), (2, 1))
    b = tensor(Storage("FloatStorage", "1", 2, legacy=legacy), 0, (2,), (1,))
    return {"state_dict": collections.OrderedDict(w=w, b=b), "meta": {"epoch": 3}}


def _good_zip(path, **kwargs):
    return write_zip(path, _state(), {"0": float_bytes(GOOD_W), "1": float_bytes(GOOD_B)},
                     **kwargs)


def _good_legacy(path):
    return write_legacy(path, _state(legacy=True),
                        [("0", 4, float_bytes(GOOD_W)), ("1", 2, float_bytes(GOOD_B))])


def _assert_good(out):
    np.testing.assert_array_equal(out["state_dict"]["w"],
                                  np.array(GOOD_W, np.float32).reshape(2, 2))
    np.testing.assert_array_equal(out["state_dict"]["b"], np.array(GOOD_B, np.float32))
    assert out["state_dict"]["w"].dtype == np.float32 and out["meta"] == {"epoch": 3}


# --- Real torch.save outputs ------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("legacy,protocol", [(False, 2), (False, 4), (True, 2)],
                         ids=["zip", "zip-protocol4", "legacy"])
def test_reads_tensors_exactly(tmp_path, legacy, protocol):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tied = torch.randn(3, 2)
    state = collections.OrderedDict(
        f32=torch.randn(3, 5), f64=torch.randn(2, dtype=torch.float64),
        f16=torch.randn(4).half(), bf16=torch.randn(4).bfloat16(),
        i64=torch.tensor([1, -2, 3]), i32=torch.tensor([7, -8], dtype=torch.int32),
        i8=torch.tensor([-128, 127], dtype=torch.int8),
        u8=torch.tensor([0, 255], dtype=torch.uint8),
        flag=torch.tensor([True, False]), scalar=torch.tensor(7),
        transposed=base.t(), sliced=base[1:3, 2:5],  # views share one storage
        stepped=base[::2, 1::3], expanded=torch.zeros(1).expand(4),  # stride 0
        row_expanded=torch.arange(3.).reshape(3, 1).expand(3, 5),
        tied_a=tied, tied_b=tied, tied_view=tied[1:],  # one storage, three tensors
        empty=torch.zeros(0, 3), param=torch.nn.Parameter(torch.ones(2, 2)))
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 3, "name": "x"}}, str(path),
               _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    out = pth_reader.read_checkpoint(path)
    assert out["meta"] == {"epoch": 3, "name": "x"}
    got = out["state_dict"]
    assert list(got) == list(state)
    for key, tensor_ in state.items():
        want = tensor_.detach().float().numpy() if key == "bf16" else tensor_.detach().numpy()
        assert got[key].shape == want.shape, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        assert got[key].dtype == want.dtype, key
    if protocol != 2:  # torch 2.x's weights-only unpickler refuses protocol 4 (FRAME)
        return
    # The same result as torch's own loader.
    via_torch = pth_reader.read_checkpoint(path, use_torch=True)["state_dict"]
    for key in ("transposed", "expanded", "tied_view", "bf16"):
        np.testing.assert_array_equal(via_torch[key], got[key])


@needs_torch
def test_use_torch_calls_torch_load_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(2)}, str(path))
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(torch, "load", spy)
    np.testing.assert_array_equal(pth_reader.read_checkpoint(path, use_torch=True)["w"], [1, 1])
    assert calls and calls[0]["weights_only"] is True


@needs_torch
@pytest.mark.parametrize("use_torch", [False, True])
def test_pickled_module_says_how_to_resave(tmp_path, use_torch):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 3)), str(path))
    message = _refused(path, "whole pickled model", use_torch=use_torch)
    assert "torch.save(model.state_dict()" in message and "trusted environment" in message


# --- Code in pickles --------------------------------------------------------------------

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
    _refused(path, "magic")


POISONS = {
    # torch.FloatStorage's dtype set to float16 for every later file
    "storage_dtype": Build(Global("torch", "FloatStorage"), {"dtype": np_dtype("f2")}),
    # a rebuild function's defaults rewritten (slot-state form of BUILD)
    "function_defaults": Build(Global("torch._utils", "_rebuild_parameter"),
                               (None, {"__defaults__": (True, None)})),
    "class_attribute": Build(Global("collections", "OrderedDict"), {"fromkeys": 1}),
    # SETITEMS / APPENDS on objects the pickle did not create
    "setitems_on_global": Raw(b"cnumpy\ndtype\n(X\x01\x00\x00\x00kK\x01u"),
    "appends_on_tensor": Raw(dumps(_state()["state_dict"]["b"])[2:-1] + b"(K\x01e"),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_shared_objects_cannot_be_poisoned(tmp_path, poison):
    """A file may not change the reader for later files: refused, and a good file then
    loads exactly in the same process."""
    bad = write_zip(tmp_path / "poison.pth", {"x": POISONS[poison]},
                    {"1": float_bytes(GOOD_B)})
    _refused(bad, "BUILD|only containers created by this pickle")
    _assert_good(pth_reader.read_checkpoint(_good_zip(tmp_path / "good.pth")))
    _assert_good(pth_reader.read_checkpoint(_good_legacy(tmp_path / "good_legacy.pth")))


# --- Hostile tensor geometry and memory bombs --------------------------------------------

GEOMETRY = {  # (numel of the storage, offset, size, stride) -> expected refusal
    "negative_stride": ((4, 0, (4,), (-2**26,)), "negative"),
    "cancelling_strides": ((4, 0, (2, 2), (1024, -1024)), "negative"),
    "negative_offset": ((4, -2, (2,), (1,)), "negative"),
    "negative_size": ((4, 0, (-1, 2), (2, 1)), "negative"),
    "past_the_end": ((4, 0, (4,), (2,)), "past the end"),
    "offset_past_the_end": ((4, 3, (2,), (1,)), "past the end"),
    "overflowing_stride": ((4, 0, (2, 2), (2**62, 1)), "past the end"),
    "zero_stride_bomb": ((1, 0, (2**28,), (0,)), "expands 1 stored elements to 268435456"),
    "overlap_bomb": ((2**15, 0, (2**14, 2**14), (1, 1)), "expands 32768 stored elements"),
    "too_many_dims": ((4, 0, (1,) * 40, (1,) * 40), "dimensions"),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", sorted(GEOMETRY))
def test_hostile_tensor_geometry_is_refused(tmp_path, case, legacy):
    (numel, offset, size, stride), match = GEOMETRY[case]
    w = tensor(Storage("FloatStorage", "0", numel, legacy=legacy), offset, size, stride)
    path = tmp_path / "bad.pth"
    raw = float_bytes([1.0] * numel)
    if legacy:
        write_legacy(path, _state(True, w), [("0", numel, raw), ("1", 2, float_bytes(GOOD_B))])
    else:
        write_zip(path, _state(False, w), {"0": raw, "1": float_bytes(GOOD_B)})
    message = _refused(path, match)
    assert "tensor 'state_dict/w'" in message


def test_legacy_view_outside_its_storage_is_refused(tmp_path):
    view = Storage("FloatStorage", "0", 4, legacy=True, view=("9", 2, 4))
    path = write_legacy(tmp_path / "v.pth", _state(True, tensor(view, 0, (4,), (1,))),
                        [("0", 4, float_bytes(GOOD_W)), ("1", 2, float_bytes(GOOD_B))])
    _refused(path, r"view \('9', 2, 4\).*within its 4 elements")


def test_cli_convert_refuses_in_one_line(tmp_path, capsys):
    """keras-tin convert on a hostile file: exit 1 and one line (it used to segfault)."""
    from keras_tin import cli
    w = tensor(Storage("FloatStorage", "0", 4), 0, (4,), (-2**26,))
    path = write_zip(tmp_path / "bad.pth", _state(False, w),
                     {"0": float_bytes(GOOD_W), "1": float_bytes(GOOD_B)})
    assert cli.main(["convert", str(path), str(tmp_path / "x.weights.h5"),
                     "--arch", "tsm_resnet18"]) == 1
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keras-tin convert: error:"), lines
    assert str(path) in lines[0] and "state_dict/w" in lines[0]


def test_storage_sizes_are_checked_before_reading(tmp_path):
    # The zip entry must hold exactly numel x itemsize bytes.
    path = write_zip(tmp_path / "long.pth", _state(),
                     {"0": float_bytes(GOOD_W * 2), "1": float_bytes(GOOD_B)})
    _refused(path, r"'archive/data/0': the zip entry holds 32 bytes, but the pickle declares "
                   r"4 x float32 = 16 bytes")
    # A huge declared storage is refused without allocating it.
    w = tensor(Storage("FloatStorage", "0", 2**40), 0, (2, 2), (2, 1))
    path = write_zip(tmp_path / "huge.pth", _state(False, w),
                     {"0": float_bytes(GOOD_W), "1": float_bytes(GOOD_B)})
    _refused(path, "declares 1099511627776 x float32")
    w = tensor(Storage("FloatStorage", "0", 2**40, legacy=True), 0, (2, 2), (2, 1))
    path = write_legacy(tmp_path / "huge_legacy.pth", _state(True, w),
                        [("0", 2**40, float_bytes(GOOD_W)), ("1", 2, float_bytes(GOOD_B))])
    _refused(path, "the file ends inside it")


def test_compressed_entries_are_refused(tmp_path):
    """A deflate bomb: 8 MiB of zeros in a few KB; only stored entries (what torch.save
    writes) are read, so nothing is expanded."""
    n = 2**21
    w = tensor(Storage("FloatStorage", "0", n), 0, (n,), (1,))
    path = write_zip(tmp_path / "bomb.pth", _state(False, w),
                     {"0": bytes(4 * n), "1": float_bytes(GOOD_B)},
                     compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 64 * 1024
    _refused(path, r"'archive/data/0'|archive/data/\d is compressed")


def test_total_size_limit(tmp_path, monkeypatch):
    path = _good_zip(tmp_path / "good.pth")
    _assert_good(pth_reader.read_checkpoint(path))
    _refused(path, r"over the limit of 16 bytes .*max_bytes", max_bytes=16)
    monkeypatch.setenv(pth_reader.MAX_BYTES_ENV, "16")
    _refused(path, "over the limit of 16 bytes")
    _refused(_good_legacy(tmp_path / "good_legacy.pth"), "over the limit of 16 bytes")
    _assert_good(pth_reader.read_checkpoint(path, max_bytes=10**6))
    monkeypatch.setenv(pth_reader.MAX_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=pth_reader.MAX_BYTES_ENV):
        pth_reader.read_checkpoint(path)


def test_numpy_scalars_plain_only(tmp_path):
    meta = {"best": np.float64(0.75), "iter": np.int64(-3), "flag": np.bool_(True)}
    path = tmp_path / "meta.pth"
    with zipfile.ZipFile(path, "w") as z:  # what mmcv-style metadata pickles to
        z.writestr("archive/data.pkl", pickle.dumps({"meta": meta}, protocol=2))
    out = pth_reader.read_checkpoint(path)["meta"]
    assert out == meta and [type(v) for v in out.values()] == [type(v) for v in meta.values()]
    # A sub-array dtype (2**30 float64 per "scalar") and an object dtype are refused.
    sub = np_dtype("V8589934592", (3, "|", (np_dtype("f8"), (2**30,)), None, None,
                                   8589934592, 1, 16))
    for dtype in (sub, np_dtype("O8", (3, "|", None, None, None, -1, -1, 63))):
        bad = write_zip(tmp_path / "bad.pth", {"meta": Call(NP_SCALAR, (dtype,))})
        _refused(bad, "not a plain bool/int/float/complex type")
    bad = write_zip(tmp_path / "bad.pth", {"meta": Call(NP_SCALAR, (np_dtype("f8"), b"\0"))})
    _refused(bad, "expected 8 bytes")


# --- Malformed files --------------------------------------------------------------------

def _truncated_zip(path):
    data = _good_zip(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _missing_entry(path):
    return write_zip(path, _state(), {"0": float_bytes(GOOD_W)})


def _wrong_length(path):
    return write_zip(path, _state(), {"0": float_bytes(GOOD_W), "1": b"\0" * 6})


def _wrong_length_legacy(path):
    return write_legacy(path, _state(True), [("0", 4, float_bytes(GOOD_W)),
                                             ("1", 3, float_bytes(GOOD_B + [1.0]))])


def _non_ascii_persistent_id(path):
    return write_zip(path, None, data_pkl=b"\x80\x02P\xff\xfe\n.")


def _bad_persistent_id(path):
    return write_zip(path, {"w": PersId(("storage", "FloatStorage", "0", "cpu", 4))})


def _legacy_truncated(cut):
    def write(path):
        data = _good_legacy(path).read_bytes()
        path.write_bytes(data[:cut])
        return path
    return write


def _bare_storage(path):
    return write_zip(path, {"s": Storage("FloatStorage", "0", 4)}, {"0": float_bytes(GOOD_W)})


def _storage_two_types(path):
    state = {"a": tensor(Storage("FloatStorage", "0", 4), 0, (4,), (1,)),
             "b": tensor(Storage("IntStorage", "0", 4), 0, (4,), (1,))}
    return write_zip(path, state, {"0": float_bytes(GOOD_W)})


def _self_containing(path):  # l = []; l.append(l)
    return write_zip(path, None, data_pkl=b"\x80\x02]q\x00h\x00a.")


def _size_not_ints(path):
    return write_zip(path, {"w": tensor(Storage("FloatStorage", "0", 4), 0, ("4",), (1,))},
                     {"0": float_bytes(GOOD_W)})


def _memo_missing(path):
    return write_zip(path, None, data_pkl=b"\x80\x02h\x05.")


def _newobj(path):
    return write_zip(path, None, data_pkl=b"\x80\x02ccollections\nOrderedDict\n)\x81.")


def _duplicate_entries(path):
    _good_zip(path)
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/data/0", float_bytes([9.0] * 4))
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _no_data_pkl(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/version", "3\n")
    return path


MALFORMED = {
    "truncated_zip": (_truncated_zip, "damaged or truncated zip archive"),
    "missing_data_entry": (_missing_entry, r"storage 'archive/data/1' \(key '1'\) has no zip "
                                           r"entry archive/data/1"),
    "wrong_length_storage": (_wrong_length, "holds 6 bytes, but the pickle declares 2 x float32"),
    "wrong_length_legacy": (_wrong_length_legacy, "stores 3 elements, the pickle declares 2"),
    "non_ascii_persistent_id": (_non_ascii_persistent_id, r"opcode b'P' \(protocol-0 persistent"),
    "persistent_id_not_a_storage": (_bad_persistent_id, "unsupported persistent id"),
    "legacy_truncated_in_header": (_legacy_truncated(10), "not a PyTorch checkpoint.*truncated"),
    "legacy_truncated_in_pickle": (_legacy_truncated(200), "truncated"),
    "legacy_truncated_in_storage": (_legacy_truncated(-3), "ends inside it"),
    "bare_storage": (_bare_storage, "a storage outside a tensor"),
    "storage_declared_twice": (_storage_two_types,
                               "declared as 4 x float32 and again as 4 x int32"),
    "self_containing_list": (_self_containing, "contains itself"),
    "size_not_integers": (_size_not_ints, "not a tuple of integers"),
    "memo_read_before_write": (_memo_missing, "memo entry 5"),
    "newobj": (_newobj, r"unsupported pickle opcode b'\\x81'"),
    "duplicate_zip_entries": (_duplicate_entries, "more than once"),
    "empty_file": (_empty, "not a PyTorch checkpoint"),
    "zip_without_data_pkl": (_no_data_pkl, "expected one <root>/data.pkl"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_give_one_clear_error(tmp_path, case):
    writer, match = MALFORMED[case]
    _refused(writer(tmp_path / "bad.pth"), match)


def test_damaged_files_never_escape_checkpoint_error(tmp_path):
    """Every truncation and 300 random byte flips of good files: a result or a
    CheckpointError, nothing else (no crash, no other exception)."""
    rng = np.random.default_rng(0)
    outcomes = collections.Counter()
    for kind, good in (("zip", _good_zip(tmp_path / "good.pth")),
                       ("legacy", _good_legacy(tmp_path / "good_legacy.pth"))):
        data = good.read_bytes()
        variants = [data[:cut] for cut in range(0, len(data), 7)]
        for _ in range(150):
            flipped = bytearray(data)
            for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
                flipped[pos] = int(rng.integers(0, 256))
            variants.append(bytes(flipped))
        for i, variant in enumerate(variants):
            path = tmp_path / f"{kind}{i}.pth"
            path.write_bytes(variant)
            try:
                pth_reader.read_checkpoint(path)
                outcomes["read"] += 1
            except CheckpointError as e:
                assert str(e).startswith(str(path)) and "\n" not in str(e)
                outcomes["refused"] += 1
            path.unlink()
    assert outcomes["refused"] > 100, outcomes


def test_extract_state_dict_unwraps_and_rejects():
    arr = np.zeros(2)
    assert list(pth_reader.extract_state_dict({"state_dict": {"a": arr}, "meta": {}})) == ["a"]
    assert list(pth_reader.extract_state_dict({"a": arr})) == ["a"]
    with pytest.raises(ValueError, match="not tensors"):
        pth_reader.extract_state_dict({"a": arr, "b": "text"})


def test_struct_helpers_match_pickle():
    """pth_craft emits what Python's pickler would for plain data (sanity of the helper)."""
    value = {"a": [1, -2, 2**40, 1.5, "x", None, True, (3, 4)], "b": b"\x00\xff"}
    assert pickle.loads(dumps(value)) == value
    assert struct.unpack("<2f", float_bytes([1.0, 2.0])) == (1.0, 2.0)
