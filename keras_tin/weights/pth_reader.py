"""Reading PyTorch checkpoints (.pth / .pt) into NumPy arrays without importing torch.

A checkpoint is a pickle, and unpickling runs whatever callables the pickle names.
`read_checkpoint` unpickles with an allow-list: only the functions torch uses to
rebuild tensors and parameters, OrderedDict, and a few plain-data helpers may be
named. Anything else (os.system, builtins.eval, a trainer class, ...) is refused
with an UnpicklingError before it is called, so a checkpoint cannot run code.

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
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch's typed storage classes, by pickled name.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for torch.<X>Storage: only its dtype is used."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    """A storage whose bytes may arrive after the main pickle (legacy format)."""

    def __init__(self, storage_type, numel, data=None):
        self.storage_type = storage_type
        self.numel = numel
        self.data = data  # 1-D NumPy array once read

    def set_bytes(self, raw, byteorder="little"):
        dtype = self.storage_type.dtype
        if dtype == "bfloat16":
            # bfloat16 is the top half of a float32: widen it exactly.
            bits = np.frombuffer(raw, dtype="<u2" if byteorder == "little" else ">u2")
            self.data = (bits.astype(np.uint32) << 16).view(np.float32)
            return
        dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
        self.data = np.frombuffer(raw, dtype=dt).astype(np.dtype(dtype).newbyteorder("="))


class _View:
    """A legacy storage view: elements [offset, offset + size) of a root storage."""

    def __init__(self, root, offset, size):
        self.root, self.offset, self.size = root, offset, size
        self.storage_type = root.storage_type


class _TensorRef:
    """A tensor to materialise once every storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialise(self):
        storage, offset = self.storage, self.offset
        if isinstance(storage, _View):
            offset += storage.offset
            storage = storage.root
        flat = storage.data
        if flat is None:
            raise pickle.UnpicklingError("A tensor refers to a storage the file does not hold.")
        if not self.size:
            return np.array(flat[offset])
        needed = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if min(self.size) > 0 and needed > flat.size:
            raise pickle.UnpicklingError("A tensor reaches past the end of its storage.")
        base = flat[offset:]
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            base, shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False)
        return np.array(view)  # owns its memory, contiguous


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    return data


def _codecs_encode(text, encoding="latin1"):
    # Protocol-2 pickles store bytes as _codecs.encode(str, 'latin1').
    return str(text).encode(encoding)


def _numpy_allowed():
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = _numpy_scalar
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


def _numpy_scalar(dtype, raw=None):
    # Plain numbers that mmcv/mmengine put in checkpoint metadata.
    if raw is None:
        return np.zeros((), dtype)[()]
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
    **_numpy_allowed(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; storages come from `storage_for`."""

    def __init__(self, file, storage_for):
        super().__init__(file)
        self._storage_for = storage_for

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"Refused to load global '{module}.{name}': a checkpoint may only name "
                f"tensor-rebuild functions and plain containers. If you trust this file, "
                f"read it with use_torch=True (torch.load(weights_only=True)).") from None

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] != "storage":
            raise pickle.UnpicklingError(f"Unsupported persistent id {saved_id!r}.")
        return self._storage_for(saved_id)


def _materialise(obj):
    """Replaces every _TensorRef in containers by its array."""
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _check_storage_type(storage_type):
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"Unsupported storage type {storage_type!r}.")


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError(f"{path}: not a PyTorch zip checkpoint (no data.pkl).")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            byteorder = archive.read(root + "byteorder").decode().strip()
        storages = {}

        def storage_for(saved_id):
            _, storage_type, key, _location, numel = saved_id[:5]
            _check_storage_type(storage_type)
            key = str(key)
            if key not in storages:
                entry = root + "data/" + key
                if entry not in names:
                    raise pickle.UnpicklingError(f"{path}: storage {entry} is missing.")
                storage = _Storage(storage_type, int(numel))
                storage.set_bytes(archive.read(entry), byteorder)
                storages[key] = storage
            return storages[key]

        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storage_for)
        return _materialise(unpickler.load())


def _read_legacy(path):
    with open(path, "rb") as f:
        def plain_load():
            return RestrictedUnpickler(f, _refuse_storage).load()

        magic = plain_load()
        if magic != LEGACY_MAGIC:
            raise pickle.UnpicklingError(f"{path}: not a PyTorch checkpoint (bad magic number).")
        plain_load()  # protocol version
        sys_info = plain_load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise pickle.UnpicklingError(f"{path}: big-endian legacy checkpoints are not supported.")
        storages = {}

        def storage_for(saved_id):
            _, storage_type, key, _location, numel, view = saved_id
            _check_storage_type(storage_type)
            if key not in storages:
                storages[key] = _Storage(storage_type, int(numel))
            root = storages[key]
            if view is not None:
                _view_key, offset, size = view
                return _View(root, int(offset), int(size))
            return root

        result = RestrictedUnpickler(f, storage_for).load()
        keys = plain_load()
        for key in keys:
            if key not in storages:
                raise pickle.UnpicklingError(f"{path}: storage {key!r} was never referenced.")
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * storage.storage_type.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise pickle.UnpicklingError(f"{path}: file ends inside storage {key!r}.")
            storage.set_bytes(raw, "little")
        return _materialise(result)


def _refuse_storage(saved_id):
    raise pickle.UnpicklingError("Unexpected storage in a checkpoint header.")


def _read_with_torch(path):
    try:
        import torch
    except ImportError as e:
        raise ImportError("use_torch=True needs PyTorch: pip install 'keras-tin[torch]'") from e
    obj = torch.load(path, map_location="cpu", weights_only=True)

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


def read_checkpoint(path, use_torch=False):
    """Reads a PyTorch checkpoint; tensors come back as NumPy arrays.

    Args:
        path: a .pth / .pt / .pth.tar file (zip or legacy serialisation).
        use_torch: read with torch.load(weights_only=True) instead (needs torch).

    Returns:
        The unpickled object (usually a dict; a state dict is an OrderedDict of arrays).

    Raises:
        pickle.UnpicklingError: the file names a global outside the allow-list, or is
            not a PyTorch checkpoint.
    """
    path = str(path)
    if use_torch:
        return _read_with_torch(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    return _read_legacy(path)


def extract_state_dict(checkpoint):
    """The state dict inside a checkpoint (`state_dict` / `model` / the dict itself)."""
    obj = checkpoint
    for key in ("state_dict", "model", "module"):
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
