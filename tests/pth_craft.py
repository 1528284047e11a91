"""Hand-built PyTorch checkpoints for the reader's hostile-input tests.

`dumps` writes a protocol-2 pickle opcode by opcode, so a test can name any global,
persistent id, size or stride, whether or not torch (or Python's pickler) would write
it. `write_zip` wraps it the way torch.save's zip format does (<root>/data.pkl plus
<root>/data/<key> per storage); `write_legacy` the way the pre-1.6 format does.
"""

import collections
import struct
import zipfile

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Global:
    """GLOBAL module.name, without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Call:
    """func(*args) via REDUCE."""

    def __init__(self, func, args):
        self.func, self.args = func, tuple(args)


class Build:
    """obj, then BUILD with state."""

    def __init__(self, obj, state):
        self.obj, self.state = obj, state


class Storage:
    """A storage persistent id: ('storage', torch.<type_name>, key, location, numel[, view])."""

    def __init__(self, type_name, key, numel, location="cpu", legacy=False, view=None):
        self.type_name, self.key, self.numel = type_name, key, numel
        self.location, self.legacy, self.view = location, legacy, view


class PersId:
    """Any object as a binary persistent id (BINPERSID)."""

    def __init__(self, pid):
        self.pid = pid


class Raw:
    """Opcodes emitted verbatim."""

    def __init__(self, data):
        self.data = data


ORDERED_DICT = Global("collections", "OrderedDict")
REBUILD_V2 = Global("torch._utils", "_rebuild_tensor_v2")
NP_DTYPE = Global("numpy", "dtype")
NP_SCALAR = Global("numpy.core.multiarray", "scalar")


def tensor(storage, offset, size, stride):
    """What torch.save writes for a tensor: _rebuild_tensor_v2(storage, offset, size, ...)."""
    return Call(REBUILD_V2, (storage, offset, tuple(size), tuple(stride), False,
                             Call(ORDERED_DICT, ())))


def np_dtype(spec, state=(3, "<", None, None, None, -1, -1, 0)):
    return Build(Call(NP_DTYPE, (spec, False, True)), state)


def _emit(obj, out):
    if isinstance(obj, Raw):
        out += obj.data
    elif obj is None:
        out += b"N"
    elif obj is True or obj is False:
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif -2**31 <= obj < 2**31:
            out += b"J" + struct.pack("<i", obj)
        else:
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
            out += b"\x8a" + bytes([len(raw)]) + raw
    elif isinstance(obj, float):
        out += b"G" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        out += b"X" + struct.pack("<I", len(raw)) + raw
    elif isinstance(obj, bytes):
        out += b"B" + struct.pack("<I", len(obj)) + obj
    elif isinstance(obj, tuple):
        if not obj:
            out += b")"
        else:
            out += b"("
            for item in obj:
                _emit(item, out)
            out += b"t"
    elif isinstance(obj, list):
        out += b"]"
        if obj:
            out += b"("
            for item in obj:
                _emit(item, out)
            out += b"e"
    elif isinstance(obj, dict):
        if isinstance(obj, collections.OrderedDict):
            _emit(Call(ORDERED_DICT, ()), out)
        else:
            out += b"}"
        if obj:
            out += b"("
            for key, value in obj.items():
                _emit(key, out)
                _emit(value, out)
            out += b"u"
    elif isinstance(obj, Global):
        out += b"c" + f"{obj.module}\n{obj.name}\n".encode("utf-8")
    elif isinstance(obj, Call):
        _emit(obj.func, out)
        _emit(obj.args, out)
        out += b"R"
    elif isinstance(obj, Build):
        _emit(obj.obj, out)
        _emit(obj.state, out)
        out += b"b"
    elif isinstance(obj, Storage):
        pid = ("storage", Global("torch", obj.type_name), obj.key, obj.location, obj.numel)
        _emit(pid + ((obj.view,) if obj.legacy else ()), out)
        out += b"Q"
    elif isinstance(obj, PersId):
        _emit(obj.pid, out)
        out += b"Q"
    else:
        raise TypeError(f"cannot emit {obj!r}")


def dumps(obj):
    """A protocol-2 pickle of `obj` (built from the classes above and plain data)."""
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    out += b"."
    return bytes(out)


def write_zip(path, obj, storages=None, root="archive", byteorder="little",
              compression=zipfile.ZIP_STORED, data_pkl=None):
    """A zip-format checkpoint: `storages` maps key -> raw bytes (written as data/<key>)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/data.pkl", dumps(obj) if data_pkl is None else data_pkl)
        if byteorder is not None:
            z.writestr(f"{root}/byteorder", byteorder)
        for key, raw in (storages or {}).items():
            z.writestr(zipfile.ZipInfo(f"{root}/data/{key}"), raw, compress_type=compression)
        z.writestr(f"{root}/version", "3\n")
    return path


def write_legacy(path, obj, records=(), storage_keys=None):
    """A legacy-format checkpoint: `records` is [(key, numel written, raw bytes)]."""
    out = bytearray()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        out += dumps(header)
    out += dumps(obj)
    out += dumps([key for key, _, _ in records] if storage_keys is None else storage_keys)
    for _, numel, raw in records:
        out += struct.pack("<q", numel) + raw
    path.write_bytes(bytes(out))
    return path


def float_bytes(values):
    return struct.pack(f"<{len(values)}f", *values)

