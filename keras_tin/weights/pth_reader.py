"""Reading PyTorch checkpoints (.pth / .pt) into NumPy arrays without importing torch.

A checkpoint is a pickle, and unpickling with Python's `pickle` runs whatever callables
the pickle names. This module does not use `pickle` to load: it interprets the pickle
opcodes itself (`_PickleMachine`) and only understands what `torch.save` writes for
tensors and plain data. In particular:

- A pickle may only name torch's tensor/parameter rebuild functions, torch's typed
  storage classes, OrderedDict, set/frozenset, `_codecs.encode` and plain numpy scalars
  (bool, int, uint, float, complex); any other global is refused before anything is
  called. Allowed globals come back as fresh inert tokens, never as shared objects, so
  a file cannot modify the reader (or anything else in the process) for later files.
- Only containers the pickle itself created (dict, OrderedDict, list, set) may be
  filled by SETITEM(S)/APPEND(S)/ADDITEMS; BUILD is accepted only on those OrderedDicts
  (torch's `_metadata`, discarded) and on numpy dtype descriptions (checked, then used
  to build a plain dtype).
- Every tensor's storage offset, sizes and strides are checked with Python integers:
  none negative, and the last element it reads inside its storage. Tensors are taken
  from the storage arrays by plain slicing or explicit index arrays (a tensor that alone
  covers its whole storage is that storage's array), never by pointer arithmetic.
- Storage data must have exactly the length the pickle declares (zip entries are
  checked before they are read, and must be stored uncompressed, as torch.save writes
  them); the bytes held (data.pkl, storages read, tensors copied out of them) are capped
  at `max_bytes` (default 4 GiB, or the environment variable
  KERAS_TIN_MAX_CHECKPOINT_BYTES), and tensors with more elements than their storage
  (stride 0, as torch.save writes `x.expand(...)`) at MAX_BROADCAST_BYTES in total.
- Every refusal, and every malformed or truncated file, raises CheckpointError (a
  ValueError and pickle.UnpicklingError) naming the file, the entry or tensor key, and
  what was expected.

Both serialisations are read:
- the zip format (torch >= 1.6): <root>/data.pkl plus one raw file per storage,
  <root>/data/<key>, in the byte order of <root>/byteorder;
- the legacy format (torch < 1.6, e.g. the 2019 TSM release and the original
  torchvision files): pickled magic number, protocol and system info, the main
  pickle, the list of storage keys, then each storage as an int64 element count
  followed by its bytes (little endian).

`use_torch=True` instead calls torch.load(weights_only=True) (torch's own
allow-listing unpickler) for files this reader does not understand.
"""

import collections
import io
import os
import pickle
import re
import reprlib
import struct
import types
import zipfile
import zlib

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

DEFAULT_MAX_BYTES = 4 * 2**30
MAX_BYTES_ENV = "KERAS_TIN_MAX_CHECKPOINT_BYTES"
# Tensors with more elements than their storage holds (stride 0 / overlapping strides, as
# torch.save writes `x.expand(...)`) may add at most this many bytes in total.
MAX_BROADCAST_BYTES = 16 * 2**20
MAX_DIMS = 32
_MAX_NESTING = 200
_GATHER_BLOCK = 2**20  # elements per explicit-index block when copying strided tensors

# torch's typed storage classes, by pickled name -> NumPy dtype ("bfloat16" is widened
# to float32 exactly). Read-only.
STORAGE_DTYPES = types.MappingProxyType({
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
})

# What each allowed global does when the pickle calls it (see _PickleMachine.call).
_CALLABLE_GLOBALS = types.MappingProxyType({
    ("collections", "OrderedDict"): "ordered_dict",
    ("torch._utils", "_rebuild_tensor"): "tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "tensor",
    ("torch._utils", "_rebuild_parameter"): "parameter",
    ("torch._utils", "_rebuild_parameter_with_state"): "parameter",
    ("_codecs", "encode"): "encode",
    ("builtins", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("__builtin__", "set"): "set",
    ("__builtin__", "frozenset"): "frozenset",
    ("numpy", "dtype"): "dtype",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
})

# Every global a checkpoint may name.
ALLOWED_GLOBALS = frozenset(_CALLABLE_GLOBALS) | frozenset(("torch", n) for n in STORAGE_DTYPES)

# Plain numpy dtypes a pickled numpy scalar may have (kind + item size).
_PLAIN_NUMPY = re.compile(r"^(b1|[iu][1248]|f[248]|c(8|16))$")


class CheckpointError(pickle.UnpicklingError, ValueError):
    """A checkpoint the reader refuses: malformed, truncated, over the size limits, or
    holding objects other than tensors and plain data. The message is one line naming
    the file, the entry or tensor key where known, and what was expected."""

    def __init__(self, message):
        super().__init__(" ".join(str(message).split()))


class _Refused(Exception):
    """Raised inside the reader; read_checkpoint turns it into CheckpointError(path: ...)."""


def _refuse(message):
    raise _Refused(message)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


class _Budget:
    """Counts the bytes of tensor data held; refuses past `limit`."""

    def __init__(self, limit):
        self.limit, self.used, self.broadcast = limit, 0, 0

    def take(self, nbytes, what):
        if self.used + nbytes > self.limit:
            _refuse(f"{what} needs {nbytes} bytes, which would bring the tensor data read to "
                    f"{self.used + nbytes} bytes, over the limit of {self.limit} bytes "
                    f"(raise it with read_checkpoint(..., max_bytes=N) or the environment "
                    f"variable {MAX_BYTES_ENV} if you trust the file)")
        self.used += nbytes


# --- Inert stand-ins for what the pickle names -------------------------------------------

class _Token:
    """A global the pickle named: a fresh, immutable marker (never the real object)."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):
        raise AttributeError("read-only")

    def __repr__(self):
        return f"<global {self.module}.{self.name}>"


class _DtypeSpec:
    """numpy.dtype(...) as pickled: its arguments and (after BUILD) its state."""

    def __init__(self, args):
        self.args, self.state, self.built = args, None, False

    def resolve(self, where):
        spec = self.args[0] if self.args else None
        if not isinstance(spec, str) or not _PLAIN_NUMPY.match(spec):
            _refuse(f"{where}: numpy dtype {spec!r} is not a plain bool/int/float/complex type "
                    f"(structured, sub-array and object dtypes are refused)")
        order = "<"
        if self.state is not None:
            state = self.state
            if (not isinstance(state, tuple) or len(state) not in (8, 9)
                    or state[1] not in ("<", ">", "|", "=")
                    or any(s is not None for s in state[2:5])
                    or (len(state) == 9 and state[8] not in (None, {}))):
                _refuse(f"{where}: numpy dtype {spec!r} has state {state!r}; expected a plain "
                        f"(version, byte order, None, None, None, ...) tuple")
            order = {"|": "<", "=": "="}.get(state[1], state[1])
        return np.dtype(order + spec)


class _Storage:
    """A typed storage: declared by a persistent id, filled from its entry / record."""

    def __init__(self, name, type_name, numel):
        self.name, self.type_name, self.numel = name, type_name, numel
        self.data = None  # 1-D native-order NumPy array once read
        self.uses = 0  # how many tensors index it

    @property
    def itemsize(self):
        return 2 if self.type_name == "bfloat16" else np.dtype(self.type_name).itemsize

    @property
    def decoded_itemsize(self):
        return 4 if self.type_name == "bfloat16" else np.dtype(self.type_name).itemsize

    def set_bytes(self, buf, byteorder):
        """`buf`: a fresh uint8 array of exactly numel * itemsize bytes (ours to keep)."""
        order = "<" if byteorder == "little" else ">"
        if self.type_name == "bfloat16":
            # bfloat16 is the top half of a float32: widen it exactly.
            bits = buf.view(order + "u2").astype(np.uint32)
            self.data = (bits << 16).view(np.float32)
        elif self.type_name == "bool":
            self.data = buf != 0  # canonical True/False whatever the bytes
        else:
            data = buf.view(np.dtype(self.type_name).newbyteorder(order))
            native = np.dtype(self.type_name)
            self.data = data if data.dtype == native else data.astype(native)


class _View:
    """A legacy storage view: elements [offset, offset + numel) of a root storage."""

    def __init__(self, root, offset, numel):
        self.root, self.offset, self.numel = root, offset, numel


class _TensorRef:
    """A tensor to materialise once every storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


# --- The pickle interpreter ----------------------------------------------------------------

class _Source:
    """Exact reads from a file object of known remaining length."""

    def __init__(self, f, length, what):
        self.f, self.left, self.pos, self.what = f, length, 0, what

    def read(self, n):
        if n > self.left:
            _refuse(f"{self.what}: truncated (needs {n} more bytes at byte {self.pos}, "
                    f"{self.left} left)")
        data = self.f.read(n)
        if len(data) != n:
            _refuse(f"{self.what}: truncated at byte {self.pos + len(data)}")
        self.left -= n
        self.pos += n
        return data

    def readline(self, limit=512):
        out = bytearray()
        while True:
            c = self.read(1)
            if c == b"\n":
                return bytes(out)
            out += c
            if len(out) > limit:
                _refuse(f"{self.what}: a text field at byte {self.pos} is not terminated "
                        f"within {limit} bytes")

    def readinto(self, buf, what):
        view = memoryview(buf).cast("B")
        n = len(view)
        if n > self.left:
            _refuse(f"{what}: the file ends inside it ({n} bytes expected, {self.left} left)")
        got = 0
        while got < n:
            chunk = self.f.read(min(n - got, 2**24))
            if not chunk:
                _refuse(f"{what}: the file ends inside it ({n} bytes expected, {got} read)")
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
        self.left -= n
        self.pos += n



class _PickleMachine:
    """Interprets the pickle opcodes torch.save emits; refuses everything else."""

    def __init__(self, source, where, storage_for=None, module_probe=None):
        self.src, self.where = source, where
        self.storage_for = storage_for
        self.module_probe = module_probe  # () -> bytes, to recognise a pickled nn.Module
        self.stack, self.marks, self.memo = [], [], {}
        self.owned = {}  # id -> container this pickle created (kept alive, so ids stay unique)
        self.op_pos = 0

    # helpers
    def fail(self, message):
        _refuse(f"{self.where}: {message} (opcode at byte {self.op_pos})")

    def pop_mark(self):
        if not self.marks:
            self.fail("a MARK is missing")
        items = self.stack
        self.stack = self.marks.pop()
        return items

    def top(self):
        if not self.stack:
            self.fail("the pickle stack is empty")
        return self.stack[-1]

    def pop(self):
        if not self.stack:
            self.fail("the pickle stack is empty")
        return self.stack.pop()

    def own(self, obj):
        self.owned[id(obj)] = obj
        return obj

    def owned_target(self, types_, opcode):
        target = self.top()
        if type(target) not in types_ or self.owned.get(id(target)) is not target:
            self.fail(f"{opcode} on {_describe(target)}; only containers created by this "
                      f"pickle ({', '.join(t.__name__ for t in types_)}) may be modified")
        return target

    def run(self):
        ops = _OPS
        src = self.src
        while True:
            self.op_pos = src.pos
            code = src.read(1)
            if code == b".":
                if len(self.stack) != 1 or self.marks:
                    self.fail("STOP with an unbalanced stack")
                return self.stack.pop()
            handler = ops.get(code)
            if handler is None:
                self.fail(f"unsupported pickle opcode {code!r}"
                          + (" (protocol-0 persistent id; torch.save writes BINPERSID)"
                             if code == b"P" else ""))
            handler(self)

    # globals and calls
    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            self.refuse_global(module, name)
        return _Token(module, name)

    def refuse_global(self, module, name):
        probe = self.module_probe() if self.module_probe else b""
        named = f"{module}.{name}"
        named = named if len(named) <= 120 else named[:120] + "..."
        if module.startswith("torch.nn.") or (b"_parameters" in probe and b"_modules" in probe):
            _refuse(f"{self.where}: refused global '{named}': this file is a whole "
                    f"pickled model (torch.save(model)), not a state dict. Neither this reader "
                    f"nor torch.load(weights_only=True) (use_torch=True) loads pickled models, "
                    f"since unpickling one runs its code. In your own trusted environment, "
                    f"where the model's code is importable, re-save only its weights: "
                    f"model = torch.load(path, weights_only=False); "
                    f"torch.save(model.state_dict(), 'state_dict.pth'), then read that file")
        _refuse(f"{self.where}: refused global '{named}': a checkpoint may only name "
                f"torch's tensor-rebuild functions and storage types, OrderedDict, set/frozenset "
                f"and plain numpy scalars (unpickling anything else could run code). If you "
                f"trust the file, use_torch=True reads it with torch.load(weights_only=True), "
                f"which allows a few more torch types; or re-save the tensors as a plain state "
                f"dict with torch.save(model.state_dict(), path) in your own trusted environment")

    def call(self, func, args):
        if not isinstance(func, _Token) or (func.module, func.name) not in _CALLABLE_GLOBALS:
            self.fail(f"REDUCE calls {_describe(func)}, which is not a callable allowed global")
        if not isinstance(args, tuple):
            self.fail(f"REDUCE arguments for {func!r} are {_describe(args)}, expected a tuple")
        kind = _CALLABLE_GLOBALS[(func.module, func.name)]
        return getattr(self, "call_" + kind)(func, args)

    def call_ordered_dict(self, func, args):
        if not args:
            return self.own(collections.OrderedDict())
        if len(args) == 1 and isinstance(args[0], (list, tuple)) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in args[0]):
            return self.own(_fill_dict(self, collections.OrderedDict(),
                                       [x for pair in args[0] for x in pair]))
        self.fail(f"OrderedDict{_describe(args)}: expected no arguments or a list of pairs")

    def call_set(self, func, args):
        return self.own(set(self._items(func, args)))

    def call_frozenset(self, func, args):
        return frozenset(self._items(func, args))

    def _items(self, func, args):
        if not args:
            return ()
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            return _hashable(self, args[0])
        self.fail(f"{func!r} expects one list, got {_describe(args)}")

    def call_encode(self, func, args):
        if (len(args) in (1, 2) and isinstance(args[0], str)
                and (len(args) == 1 or args[1] in ("latin1", "latin-1"))):
            return args[0].encode("latin1")
        self.fail(f"_codecs.encode{_describe(args)}: expected (str, 'latin1')")

    def call_tensor(self, func, args):
        if func.name == "_rebuild_tensor" and len(args) != 4 or len(args) not in (4, 6, 7):
            self.fail(f"{func!r} takes (storage, offset, size, stride[, requires_grad, "
                      f"backward_hooks[, metadata]]), got {len(args)} arguments")
        storage, offset, size, stride = args[:4]
        if not isinstance(storage, (_Storage, _View)):
            self.fail(f"{func!r}: the storage is {_describe(storage)}, expected a storage "
                      f"persistent id")
        if not _is_int(offset):
            self.fail(f"{func!r}: storage offset {offset!r} is not an integer")
        for what, dims in (("size", size), ("stride", stride)):
            if not isinstance(dims, tuple) or not all(_is_int(d) for d in dims):
                self.fail(f"{func!r}: {what} {dims!r} is not a tuple of integers")
        if len(size) != len(stride):
            self.fail(f"{func!r}: size {size} and stride {stride} differ in length")
        (storage.root if isinstance(storage, _View) else storage).uses += 1
        return _TensorRef(storage, offset, size, stride)

    def call_parameter(self, func, args):
        if len(args) not in (1, 2, 3, 4) or not isinstance(args[0], _TensorRef):
            self.fail(f"{func!r}: expected (tensor, requires_grad, backward_hooks[, state])")
        return args[0]

    def call_dtype(self, func, args):
        if not 1 <= len(args) <= 3 or not isinstance(args[0], str):
            self.fail(f"numpy.dtype{_describe(args)}: expected (str, align, copy)")
        return _DtypeSpec(args)

    def call_scalar(self, func, args):
        if len(args) not in (1, 2) or not isinstance(args[0], _DtypeSpec):
            self.fail(f"numpy scalar{_describe(args)}: expected (dtype, bytes)")
        dtype = args[0].resolve(self.where)
        if len(args) == 1:
            return np.zeros((), dtype)[()]
        raw = args[1]
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, bytes) or len(raw) != dtype.itemsize:
            self.fail(f"numpy scalar of {dtype}: expected {dtype.itemsize} bytes of data, got "
                      f"{_describe(raw)}")
        return np.frombuffer(raw, dtype=dtype, count=1).astype(dtype.newbyteorder("="))[0]

    def build(self, target, state):
        if isinstance(target, _DtypeSpec):
            if target.built:
                self.fail("BUILD twice on one numpy dtype")
            target.state, target.built = state, True
            return
        if type(target) is collections.OrderedDict and self.owned.get(id(target)) is target:
            # torch's state_dict() OrderedDicts carry `_metadata`; it is not needed here.
            if isinstance(state, dict) or (isinstance(state, tuple) and len(state) == 2 and all(
                    s is None or isinstance(s, dict) for s in state)):
                return
            self.fail(f"BUILD on an OrderedDict with state {_describe(state)}, expected a dict")
        self.fail(f"BUILD (setting state) on {_describe(target)} is refused; only OrderedDicts "
                  f"this pickle created and numpy dtypes may be built")

    def persistent(self, pid):
        if self.storage_for is None:
            self.fail("a storage reference where none may appear")
        if (not isinstance(pid, tuple) or not pid or pid[0] != "storage"
                or not isinstance(pid[1], _Token) or pid[1].module != "torch"
                or pid[1].name not in STORAGE_DTYPES):
            self.fail(f"unsupported persistent id {_describe(pid)}; expected ('storage', "
                      f"torch.<Type>Storage, key, location, numel, ...)")
        return self.storage_for(pid, self.fail)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _describe(obj, limit=100):
    """A short description of pickled data for error messages."""
    names = {_Token: None, _DtypeSpec: "a numpy dtype", _Storage: "a storage",
             _View: "a storage view", _TensorRef: "a tensor"}
    if type(obj) in names:
        return names[type(obj)] or repr(obj)
    text = _REPR.repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def _op(*codes):
    def register(fn):
        for code in codes:
            _OPS[code] = fn
        return fn
    return register


_OPS = {}


@_op(b"\x80")
def _op_proto(m):
    if m.src.read(1)[0] > 5:
        m.fail("unknown pickle protocol")


@_op(b"\x95")
def _op_frame(m):
    m.src.read(8)  # frames are only a buffering hint


@_op(b"(")
def _op_mark(m):
    m.marks.append(m.stack)
    m.stack = []


@_op(b"0")
def _op_pop(m):
    if m.stack:
        m.stack.pop()
    else:
        m.pop_mark()


@_op(b"1")
def _op_pop_mark(m):
    m.pop_mark()


@_op(b"2")
def _op_dup(m):
    m.stack.append(m.top())


@_op(b"N")
def _op_none(m):
    m.stack.append(None)


@_op(b"\x88")
def _op_true(m):
    m.stack.append(True)


@_op(b"\x89")
def _op_false(m):
    m.stack.append(False)


@_op(b"J")
def _op_binint(m):
    m.stack.append(struct.unpack("<i", m.src.read(4))[0])


@_op(b"K")
def _op_binint1(m):
    m.stack.append(m.src.read(1)[0])


@_op(b"M")
def _op_binint2(m):
    m.stack.append(struct.unpack("<H", m.src.read(2))[0])


@_op(b"\x8a")
def _op_long1(m):
    m.stack.append(int.from_bytes(m.src.read(m.src.read(1)[0]), "little", signed=True))


@_op(b"\x8b")
def _op_long4(m):
    (n,) = struct.unpack("<i", m.src.read(4))
    if not 0 <= n <= 4096:
        m.fail(f"an integer of {n} bytes")
    m.stack.append(int.from_bytes(m.src.read(n), "little", signed=True))


@_op(b"G")
def _op_binfloat(m):
    m.stack.append(struct.unpack(">d", m.src.read(8))[0])


def _length(m, fmt):
    (n,) = struct.unpack(fmt, m.src.read(struct.calcsize(fmt)))
    if n < 0 or n > m.src.left:
        m.fail(f"a string of {n} bytes, but only {m.src.left} bytes follow")
    return n


def _text(m, fmt):
    try:
        return m.src.read(_length(m, fmt)).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        m.fail("a string that is not valid UTF-8")


@_op(b"X")
def _op_binunicode(m):
    m.stack.append(_text(m, "<I"))


@_op(b"\x8c")
def _op_short_binunicode(m):
    m.stack.append(_text(m, "<B"))


@_op(b"\x8d")
def _op_binunicode8(m):
    m.stack.append(_text(m, "<Q"))


@_op(b"B")
def _op_binbytes(m):
    m.stack.append(m.src.read(_length(m, "<I")))


@_op(b"C")
def _op_short_binbytes(m):
    m.stack.append(m.src.read(_length(m, "<B")))


@_op(b"\x8e")
def _op_binbytes8(m):
    m.stack.append(m.src.read(_length(m, "<Q")))


@_op(b"T")
def _op_binstring(m):  # Python 2 str
    m.stack.append(m.src.read(_length(m, "<i")).decode("latin1"))


@_op(b"U")
def _op_short_binstring(m):
    m.stack.append(m.src.read(_length(m, "<B")).decode("latin1"))


@_op(b")")
def _op_empty_tuple(m):
    m.stack.append(())


@_op(b"t")
def _op_tuple(m):
    items = tuple(m.pop_mark())
    m.stack.append(items)


@_op(b"]")
def _op_empty_list(m):
    m.stack.append(m.own([]))


@_op(b"l")
def _op_list(m):
    items = m.own(list(m.pop_mark()))
    m.stack.append(items)


@_op(b"}")
def _op_empty_dict(m):
    m.stack.append(m.own({}))


@_op(b"d")
def _op_dict(m):
    items = m.pop_mark()
    if len(items) % 2:
        m.fail("DICT with an odd number of items")
    m.stack.append(m.own(_fill_dict(m, {}, items)))


@_op(b"\x8f")
def _op_empty_set(m):
    m.stack.append(m.own(set()))


@_op(b"\x91")
def _op_frozenset(m):
    items = frozenset(_hashable(m, m.pop_mark()))
    m.stack.append(items)


@_op(b"\x90")
def _op_additems(m):
    items = m.pop_mark()
    m.owned_target((set,), "ADDITEMS").update(_hashable(m, items))


@_op(b"a")
def _op_append(m):
    value = m.pop()
    m.owned_target((list,), "APPEND").append(value)


@_op(b"e")
def _op_appends(m):
    items = m.pop_mark()
    m.owned_target((list,), "APPENDS").extend(items)


@_op(b"s")
def _op_setitem(m):
    value, key = m.pop(), m.pop()
    _fill_dict(m, m.owned_target((dict, collections.OrderedDict), "SETITEM"), [key, value])


@_op(b"u")
def _op_setitems(m):
    items = m.pop_mark()
    if len(items) % 2:
        m.fail("SETITEMS with an odd number of items")
    _fill_dict(m, m.owned_target((dict, collections.OrderedDict), "SETITEMS"), items)


def _hashable(m, items):
    for item in items:
        if not isinstance(item, (str, bytes, int, float, complex, bool, type(None), tuple,
                                 frozenset, np.generic)):
            m.fail(f"{_describe(item)} cannot be a set element or dict key")
        if isinstance(item, (tuple, frozenset)):
            _hashable(m, item)
    return items


def _fill_dict(m, target, items):
    keys = _hashable(m, items[0::2])
    for key, value in zip(keys, items[1::2]):
        target[key] = value
    return target


@_op(b"c")
def _op_global(m):
    module = m.src.readline().decode("utf-8", "replace")
    name = m.src.readline().decode("utf-8", "replace")
    m.stack.append(m.find_class(module, name))


@_op(b"\x93")
def _op_stack_global(m):
    name, module = m.pop(), m.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        m.fail("STACK_GLOBAL needs two strings")
    m.stack.append(m.find_class(module, name))


@_op(b"R")
def _op_reduce(m):
    args = m.pop()
    m.stack[-1] = m.call(m.top(), args)


@_op(b"b")
def _op_build(m):
    state = m.pop()
    m.build(m.top(), state)


@_op(b"Q")
def _op_binpersid(m):
    m.stack.append(m.persistent(m.pop()))


def _memo_put(m, index):
    m.memo[index] = m.top()


@_op(b"q")
def _op_binput(m):
    _memo_put(m, m.src.read(1)[0])


@_op(b"r")
def _op_long_binput(m):
    _memo_put(m, struct.unpack("<I", m.src.read(4))[0])


@_op(b"\x94")
def _op_memoize(m):
    _memo_put(m, len(m.memo))


def _memo_get(m, index):
    if index not in m.memo:
        m.fail(f"memo entry {index} is read before it is written")
    m.stack.append(m.memo[index])


@_op(b"h")
def _op_binget(m):
    _memo_get(m, m.src.read(1)[0])


@_op(b"j")
def _op_long_binget(m):
    _memo_get(m, struct.unpack("<I", m.src.read(4))[0])


def _tuple_n_factory(n):
    def handler(m):
        if len(m.stack) < n:
            m.fail("the pickle stack is too short for a tuple")
        items = tuple(m.stack[-n:])
        del m.stack[-n:]
        m.stack.append(items)
    return handler


_OPS[b"\x85"], _OPS[b"\x86"], _OPS[b"\x87"] = (_tuple_n_factory(n) for n in (1, 2, 3))


# --- Tensors ------------------------------------------------------------------------------

def _materialise(obj, budget):
    """Replaces every tensor reference in the containers by its array (checked copy)."""
    done = {}  # id -> result (shared containers / tensors stay shared; cycles refused)
    busy = object()
    keep = []

    def walk(value, path, depth):
        if depth > _MAX_NESTING:
            _refuse(f"{path or 'the checkpoint'}: containers nested more than {_MAX_NESTING} deep")
        if isinstance(value, (str, bytes, int, float, complex, type(None), np.generic)):
            return value
        key = id(value)
        if key in done:
            if done[key] is busy:
                _refuse(f"{path or 'the checkpoint'}: a container that contains itself")
            return done[key]
        done[key] = busy
        keep.append(value)
        if isinstance(value, _TensorRef):
            out = _tensor(value, path or "the checkpoint", budget)
        elif isinstance(value, dict):  # dict and OrderedDict
            out = type(value)((k, walk(v, _join(path, k), depth + 1)) for k, v in value.items())
        elif isinstance(value, list):
            out = [walk(v, _join(path, i), depth + 1) for i, v in enumerate(value)]
        elif isinstance(value, tuple):
            out = tuple(walk(v, _join(path, i), depth + 1) for i, v in enumerate(value))
        elif isinstance(value, (set, frozenset)):
            out = value  # elements were checked to be plain hashable data
        else:
            _refuse(f"{path or 'the checkpoint'}: {_describe(value)} outside a tensor is not "
                    f"supported (expected tensors, numbers, strings and containers)")
        done[key] = out
        return out

    return walk(obj, "", 0)


def _join(path, key):
    return f"{path}/{key}" if path else str(key)


def _tensor(ref, path, budget):
    where = f"tensor '{path}'"
    storage, offset, size, stride = ref.storage, ref.offset, ref.size, ref.stride
    if isinstance(storage, _View):
        limit, base, root = storage.numel, storage.offset, storage.root
    else:
        limit, base, root = storage.numel, 0, storage
    if len(size) > MAX_DIMS:
        _refuse(f"{where}: {len(size)} dimensions, at most {MAX_DIMS} are supported")
    if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        _refuse(f"{where}: storage offset {offset}, size {size}, stride {stride}; expected no "
                f"negative values (torch never writes them)")
    if max((offset,) + size + stride) >= 2**63:
        _refuse(f"{where}: storage offset {offset}, size {size}, stride {stride}; expected "
                f"values below 2**63")
    if root.data is None:
        _refuse(f"{where}: its storage {root.name} holds no data in the file")
    numel = _prod(size)
    dtype = root.data.dtype
    if numel == 0:
        return np.empty(size, dtype)
    # Strides of size-1 dimensions are never used: drop them so nothing overflows below.
    stride = tuple(0 if n == 1 else s for n, s in zip(size, stride))
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if extent > limit:
        _refuse(f"{where}: storage offset {offset}, size {size}, stride {stride} reach element "
                f"{extent - 1}, past the end of its storage {root.name} of {limit} elements")
    nbytes = numel * dtype.itemsize
    if numel > limit:  # reads some elements more than once (stride 0: torch's expand)
        budget.broadcast += nbytes
        if budget.broadcast > MAX_BROADCAST_BYTES:
            _refuse(f"{where}: size {size}, stride {stride} expands {limit} stored elements to "
                    f"{numel}; at most {MAX_BROADCAST_BYTES} bytes of such expanded tensors are "
                    f"read from one file")
    start = base + offset
    flat = root.data
    if _contiguous(size, stride):
        if start == 0 and numel == root.numel and root.uses == 1:
            return flat.reshape(size)  # the storage's own private array: no copy
        budget.take(nbytes, where)
        return flat[start:start + numel].reshape(size).copy()
    budget.take(nbytes, where)
    out = np.empty(size, dtype)
    _gather(out, flat, start, size, stride)
    return out


def _contiguous(size, stride):
    expected = 1
    for n, s in zip(reversed(size), reversed(stride)):
        if n != 1 and s != expected:
            return False
        expected *= n
    return True


def _gather(out, flat, start, size, stride):
    """out[i...] = flat[start + sum(i_k * stride_k)], with bounds already checked."""
    if len(size) == 1:
        n, s = size[0], stride[0]
        out[...] = flat[start] if s == 0 else flat[start:start + (n - 1) * s + 1:s]
        return
    inner_size, inner_stride = size[1:], stride[1:]
    block = _prod(inner_size)
    if block > _GATHER_BLOCK:
        for i in range(size[0]):
            _gather(out[i], flat, start + i * stride[0], inner_size, inner_stride)
        return
    inner = np.zeros((), np.int64)
    for n, s in zip(inner_size, inner_stride):
        inner = inner[..., None] + np.arange(n, dtype=np.int64) * s
    rows = max(1, _GATHER_BLOCK // max(block, 1))
    for lo in range(0, size[0], rows):
        hi = min(size[0], lo + rows)
        lead = start + np.arange(lo, hi, dtype=np.int64) * stride[0]
        out[lo:hi] = flat[lead.reshape((-1,) + (1,) * len(inner_size)) + inner]


def _declare(storages, pid, fail, name):
    """The storage for a persistent id; one key must always name the same storage."""
    type_name = STORAGE_DTYPES[pid[1].name]
    key, location, numel = pid[2], pid[3], pid[4]
    if not isinstance(key, str) or not key or not isinstance(location, str) \
            or not _is_int(numel) or numel < 0:
        fail(f"storage persistent id {_describe(pid)}: expected a key string, a location "
             f"string and a non-negative element count")
    storage = storages.get(key)
    if storage is None:
        storage = storages[key] = _Storage(name(key), type_name, numel)
    elif storage.type_name != type_name or storage.numel != numel:
        fail(f"storage {storage.name} is declared as {storage.numel} x {storage.type_name} and "
             f"again as {numel} x {type_name}")
    return storage


# --- The two file formats ------------------------------------------------------------------

def _read_zip(path, budget):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError,
            NotImplementedError) as e:
        _refuse(f"damaged or truncated zip archive ({type(e).__name__}: {e})")
    with archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        by_name = {i.filename: i for i in infos}
        if len(by_name) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            _refuse(f"zip entries {dup[:5]} appear more than once")
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            _refuse(f"not a PyTorch zip checkpoint: expected one <root>/data.pkl entry, found "
                    f"{len(pickles)}")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in by_name:
            raw = _read_entry(archive, by_name[root + "byteorder"], 16)
            byteorder = raw.decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                _refuse(f"zip entry {root}byteorder: {byteorder!r}, expected 'little' or 'big'")
        info = by_name[pickles[0]]
        budget.take(info.file_size, f"zip entry {info.filename}")
        data = _read_entry(archive, info, info.file_size)
        storages = {}

        def storage_for(pid, fail):
            if len(pid) != 5:
                fail(f"storage persistent id {_describe(pid)}: expected 5 fields "
                     f"('storage', type, key, location, numel)")
            storage = _declare(storages, pid, fail, lambda key: f"'{root}data/{key}'")
            if storage.data is None:
                entry = root + "data/" + pid[2]
                if entry not in by_name:
                    fail(f"storage {storage.name} (key {pid[2]!r}) has no zip entry {entry}")
                entry_info = by_name[entry]
                nbytes = storage.numel * storage.itemsize
                if entry_info.file_size != nbytes:
                    fail(f"storage {storage.name}: the zip entry holds {entry_info.file_size} "
                         f"bytes, but the pickle declares {storage.numel} x {storage.type_name} "
                         f"= {nbytes} bytes")
                budget.take(storage.numel * storage.decoded_itemsize, f"storage {storage.name}")
                buf = np.empty(nbytes, np.uint8)
                _read_entry(archive, entry_info, nbytes, into=buf)
                storage.set_bytes(buf, byteorder)
            return storage

        machine = _PickleMachine(_Source(io.BytesIO(data), len(data), f"zip entry {pickles[0]}"),
                                 f"zip entry {pickles[0]}", storage_for, lambda: data)
        return _materialise(machine.run(), budget)


def _read_entry(archive, info, max_size, into=None):
    name = f"zip entry {info.filename}"
    if info.flag_bits & 0x1:
        _refuse(f"{name} is encrypted")
    if info.compress_type != zipfile.ZIP_STORED:
        _refuse(f"{name} is compressed (zip method {info.compress_type}); torch.save writes "
                f"uncompressed (stored) entries, and only those are read")
    if info.file_size > max_size or info.compress_size != info.file_size:
        _refuse(f"{name} holds {info.file_size} bytes ({info.compress_size} stored), expected "
                f"at most {max_size}")
    try:
        with archive.open(info) as f:
            if into is None:
                data = f.read(info.file_size + 1)
                if len(data) != info.file_size:
                    _refuse(f"{name}: {len(data)} bytes read, {info.file_size} expected")
                return data
            _Source(f, info.file_size, name).readinto(into, name)
            if f.read(1):
                _refuse(f"{name} is longer than declared")
            return into
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError,
            RuntimeError) as e:
        _refuse(f"{name} is damaged, truncated or unsupported ({type(e).__name__}: {e})")


def _read_legacy(f, budget):
    size = os.fstat(f.fileno()).st_size
    src = _Source(f, size, "legacy checkpoint")

    def probe():  # the rest of the main pickle, to recognise a pickled nn.Module
        try:
            return f.read(64 * 2**20)
        except OSError:
            return b""

    def header(what):
        machine = _PickleMachine(src, f"legacy checkpoint ({what}, byte {src.pos})")
        return machine.run()

    try:
        magic = header("magic number")
    except _Refused as e:
        _refuse(f"not a PyTorch checkpoint: neither a zip archive nor a legacy torch.save file "
                f"({e})")
    if magic != LEGACY_MAGIC:
        _refuse("not a PyTorch checkpoint (bad magic number)")
    protocol = header("protocol version")
    if protocol != LEGACY_PROTOCOL:
        _refuse(f"legacy protocol version {_describe(protocol)}, expected {LEGACY_PROTOCOL}")
    sys_info = header("system info")
    if not isinstance(sys_info, dict):
        _refuse(f"legacy system info is {_describe(sys_info)}, expected a dict")
    if not sys_info.get("little_endian", True):
        _refuse("big-endian legacy checkpoints are not supported")
    storages = {}

    def storage_for(pid, fail):
        if len(pid) != 6:
            fail(f"storage persistent id {_describe(pid)}: expected 6 fields "
                 f"('storage', type, key, location, numel, view)")
        storage = _declare(storages, pid, fail, lambda key: f"{key!r}")
        view = pid[5]
        if view is None:
            return storage
        if (not isinstance(view, tuple) or len(view) != 3 or not _is_int(view[1])
                or not _is_int(view[2]) or view[1] < 0 or view[2] < 0
                or view[1] + view[2] > storage.numel):
            fail(f"storage {storage.name}: view {_describe(view)}, expected (key, offset, size) "
                 f"within its {storage.numel} elements")
        return _View(storage, view[1], view[2])

    where = f"legacy checkpoint (main pickle, byte {src.pos})"
    result = _PickleMachine(src, where, storage_for, probe).run()
    keys = header("storage keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) \
            or len(set(keys)) != len(keys):
        _refuse(f"legacy storage key list {_describe(keys)}, expected distinct strings")
    for key in keys:
        if key not in storages:
            _refuse(f"legacy storage {key!r} is stored but never used by the pickle")
        storage = storages[key]
        what = f"legacy storage {storage.name}"
        (numel,) = struct.unpack("<q", src.read(8))
        if numel != storage.numel:
            _refuse(f"{what}: the file stores {numel} elements, the pickle declares "
                    f"{storage.numel}")
        nbytes = numel * storage.itemsize
        if nbytes > src.left:
            _refuse(f"{what}: the file ends inside it ({nbytes} bytes expected, {src.left} left)")
        budget.take(numel * storage.decoded_itemsize, what)
        buf = np.empty(nbytes, np.uint8)
        src.readinto(buf, what)
        storage.set_bytes(buf, "little")
    return _materialise(result, budget)


def _max_bytes(max_bytes):
    if max_bytes is None:
        text = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_BYTES
        try:
            max_bytes = int(text)
        except ValueError:
            raise ValueError(f"{MAX_BYTES_ENV}={text!r}: expected a whole number of bytes") \
                from None
    if not _is_int(max_bytes) or max_bytes <= 0:
        raise ValueError(f"max_bytes={max_bytes!r}: expected a positive number of bytes")
    return max_bytes


# --- torch ---------------------------------------------------------------------------------

def _pickled_module_probe(path):
    """The pickle bytes (or the file head) of `path`, to recognise a pickled nn.Module."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    if info.filename.endswith("/data.pkl") and info.file_size <= 64 * 2**20:
                        return archive.read(info)
            return b""
        with open(path, "rb") as f:
            return f.read(64 * 2**20)
    except Exception:  # noqa: BLE001 (only a hint for an error message)
        return b""


def _read_with_torch(path):
    try:
        import torch
    except ImportError as e:
        raise ImportError("use_torch=True needs PyTorch: pip install 'keras-tin[torch]'") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError as e:
        if "weights_only" in str(e):
            raise ImportError("use_torch=True needs torch >= 1.13 (torch.load weights_only)") \
                from e
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        text = str(e)
        if "WeightsUnpickler error:" in text:  # torch's reason, without its advice
            text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        detail = " ".join(text.split()).split(". ")[0] or type(e).__name__
        probe = _pickled_module_probe(path)
        if b"_parameters" in probe and b"_modules" in probe:
            raise CheckpointError(
                f"{path}: torch.load(weights_only=True) refused the file ({detail[:300]}); it is "
                f"a whole pickled model (torch.save(model)), not a state dict, and neither "
                f"torch.load(weights_only=True) nor this package's reader loads pickled models. "
                f"In your own trusted environment, where the model's code is importable, re-save "
                f"only its weights: model = torch.load(path, weights_only=False); "
                f"torch.save(model.state_dict(), 'state_dict.pth'), then read that file") from e
        raise CheckpointError(f"{path}: torch.load(weights_only=True) could not read the file: "
                              f"{detail[:500]}") from e

    def to_numpy(value):
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().float().numpy() if value.dtype == torch.bfloat16 \
                else value.detach().cpu().numpy()
        if isinstance(value, dict):
            return type(value)((k, to_numpy(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(to_numpy(v) for v in value)
        return value
    return to_numpy(obj)


# --- Entry points --------------------------------------------------------------------------

_MALFORMED = (struct.error, EOFError, zipfile.BadZipFile, zlib.error, UnicodeError,
              OverflowError, RecursionError, ValueError, TypeError, KeyError, IndexError,
              AttributeError, NotImplementedError)


def read_checkpoint(path, use_torch=False, max_bytes=None):
    """Reads a PyTorch checkpoint; tensors come back as NumPy arrays.

    Args:
        path: a .pth / .pt / .pth.tar file (zip or legacy serialisation).
        use_torch: read with torch.load(weights_only=True) instead (needs torch). The
            limits below then do not apply (torch does its own checking).
        max_bytes: the most bytes of tensor data (storages plus copied tensors) to hold;
            default: the environment variable KERAS_TIN_MAX_CHECKPOINT_BYTES, else 4 GiB.

    Returns:
        The unpickled object (usually a dict; a state dict is an OrderedDict of arrays).
        bfloat16 tensors come back as float32 (exact).

    Raises:
        CheckpointError (a ValueError and pickle.UnpicklingError): the file names a global
            outside the allow-list, is not a PyTorch checkpoint, is malformed or truncated,
            or exceeds the limits. The message names the file and the entry or tensor.
        OSError: the file cannot be opened or read.
    """
    path = os.fspath(path)
    if use_torch:
        return _read_with_torch(path)
    budget = _Budget(_max_bytes(max_bytes))
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if head.startswith(b"PK"):
                if head not in (b"PK\x03\x04", b"PK\x05\x06"):
                    _refuse("not a PyTorch checkpoint (an unknown 'PK' header)")
                f.close()
                return _read_zip(path, budget)
            f.seek(0)
            return _read_legacy(f, budget)
    except _Refused as e:
        raise CheckpointError(f"{path}: {e}") from None
    except _MALFORMED as e:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: {e})") from e


def extract_state_dict(checkpoint):
    """The state dict inside a checkpoint (`state_dict` / `model` / `model_state`
    (TAdaConv) / the dict itself)."""
    obj = checkpoint
    for key in ("state_dict", "model", "module", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ValueError("The checkpoint holds no state dict (a dict of name -> tensor).")
    arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    others = sorted(k for k in obj if k not in arrays)
    if others:
        raise ValueError(f"The state dict has entries that are not tensors: {others[:10]}")
    return arrays
