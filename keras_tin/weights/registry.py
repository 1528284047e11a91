"""The pretrained-weights manifest (manifest.json) and hash-checked downloads."""

import functools
import hashlib
import json
import os
import warnings

MANIFEST = os.path.join(os.path.dirname(__file__), "manifest.json")
CACHE_SUBDIR = os.path.join("models", "keras_tin")
ALLOW_UNVERIFIED_ENV = "KERAS_TIN_ALLOW_UNVERIFIED"


@functools.lru_cache(maxsize=None)
def _records():
    with open(MANIFEST, encoding="utf-8") as f:
        records = json.load(f)["records"]
    return {r["name"]: r for r in records}


def list_pretrained(architecture=None):
    """Names of the manifest's checkpoints, optionally for one architecture."""
    return sorted(n for n, r in _records().items()
                  if architecture is None or r["architecture"] == architecture)


def get_record(name):
    """The manifest record (a dict copy) of a pretrained checkpoint name."""
    try:
        return dict(_records()[name])
    except KeyError:
        raise ValueError(f"Unknown pretrained weights name. Received: weights={name!r}. "
                         f"Known names: {list_pretrained()}") from None


def is_pretrained_name(weights):
    return isinstance(weights, str) and weights in _records()


def sha256_of(path, chunk_size=1 << 20):
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify_hash(path, sha256=None, sha256_prefix=None, name=None, allow_unverified=False):
    """Checks a file against a full sha256 or a published prefix; returns the actual sha256.

    Raises ValueError naming both hashes on a mismatch, and ValueError when there is
    nothing to check against unless `allow_unverified` (then it warns with the hash).
    """
    actual = sha256_of(path)
    label = f"'{name}'" if name else os.path.basename(path)
    expected = sha256 or sha256_prefix
    if expected is None:
        if allow_unverified or os.environ.get(ALLOW_UNVERIFIED_ENV) == "1":
            warnings.warn(f"{label}: no published hash to verify {path} against; loading it "
                          f"unverified (its sha256 is {actual}).", stacklevel=3)
            return actual
        raise ValueError(
            f"{label}: the manifest has no published hash for this file, so {path} cannot be "
            f"verified (its sha256 is {actual}). Check it against the publisher yourself, then "
            f"pass allow_unverified=True or set {ALLOW_UNVERIFIED_ENV}=1, or load the local path.")
    expected = expected.lower()
    if not actual.startswith(expected) or (sha256 and actual != expected):
        raise ValueError(
            f"sha256 mismatch for {label} ({path}): expected {expected}"
            f"{'' if sha256 else ' (published prefix)'}, got {actual}. The file is corrupt, "
            f"incomplete or not the published one.")
    return actual


def download(name, cache_dir=None, allow_unverified=False, converted=False):
    """Downloads a manifest checkpoint into the Keras cache and verifies its hash.

    Returns the local path. keras.utils.get_file does the download (and the full-hash
    check when a full sha256 is known); the published-prefix check is done here.
    A file that fails the check is removed from the cache. converted=True fetches the
    record's published keras_tin conversion (converted_url, checked against the full
    converted_sha256) instead of the publisher's PyTorch file.
    """
    import keras

    record = get_record(name)
    if converted:
        url, sha256, prefix = record.get("converted_url"), record.get("converted_sha256"), None
        if not url:
            raise ValueError(f"'{name}' has no published keras_tin conversion (converted_url is "
                             f"empty); load it without converted=True.")
    else:
        url, sha256, prefix = record.get("url"), record.get("sha256"), record.get("sha256_prefix")
    if not url:  # "download": "manual" (Google Drive / Baidu only): a file the user fetched
        return _manual_file(record, cache_dir, allow_unverified)
    fname = url.rstrip("/").split("/")[-1]
    if cache_dir is not None:
        if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
            raise ValueError(f"cache_dir must be a directory; {cache_dir!r} is a file.")
        # get_file falls back to /tmp/.keras when cache_dir does not exist yet.
        os.makedirs(cache_dir, exist_ok=True)
    cached = _cache_path(cache_dir, fname)
    if os.path.isdir(cached):
        raise ValueError(f"'{name}': the cache entry {cached} is a directory, not the "
                         f"downloaded file; remove it and try again.")
    try:
        path = keras.utils.get_file(fname, origin=url, file_hash=sha256,
                                    hash_algorithm="sha256", cache_subdir=CACHE_SUBDIR,
                                    cache_dir=cache_dir)
    except Exception as e:  # get_file raises a bare Exception on fetch errors
        if isinstance(e, ValueError) and "hash" in str(e):
            raise _hash_mismatch(name, url, sha256, cache_dir, fname) from e
        if isinstance(e, ValueError) or "URL fetch failure" not in str(e):
            raise
        raise ConnectionError(
            f"Could not download '{name}' from {url} ({e}). Without internet access, "
            f"download it elsewhere and either put it at {_cache_path(cache_dir, fname)} "
            f"(it is hash-checked there) or pass the file's path as weights=<path>.") from e
    try:
        verify_hash(path, sha256, prefix, name, allow_unverified)
    except ValueError as e:
        if "mismatch" in str(e):
            _remove(path)
        raise
    return path


class ManualDownloadError(FileNotFoundError, ValueError):
    """A manifest checkpoint that must be downloaded by hand and is not in the cache (a
    FileNotFoundError, and a ValueError like the loader's other refusals)."""


def manual_file_name(record):
    """The cache file name of a record without a direct URL: its "file_name", else
    <name>.pth."""
    return record.get("file_name") or f"{record['name']}.pth"


def _manual_file(record, cache_dir, allow_unverified):
    """A record that cannot be downloaded automatically: its file placed in the cache by
    hand (hash-checked like a download, where a hash is published), or a
    ManualDownloadError saying where to get it and how to pass it."""
    name = record["name"]
    cached = _cache_path(cache_dir, manual_file_name(record))
    if os.path.isfile(cached):
        verify_hash(cached, record.get("sha256"), record.get("sha256_prefix"), name,
                    allow_unverified)
        return cached
    pages = [record.get("download_page")] + list(record.get("download_mirrors") or [])
    where = " or ".join(p for p in pages if p) or record.get("source") or "its publisher"
    hashed = record.get("sha256") or record.get("sha256_prefix")
    check = ("it is checked against the published sha256" if hashed else
             "no hash is published, so also pass allow_unverified=True (or set "
             f"{ALLOW_UNVERIFIED_ENV}=1) once you trust the file")
    raise ManualDownloadError(
        f"'{name}' cannot be downloaded automatically (the publisher shares it only "
        f"through {where}). Download it by hand, then either pass the file itself, "
        f"weights=\"<path to file>\" (e.g. weights=\"/data/{manual_file_name(record)}\"), "
        f"or save it as {cached} and use weights={name!r} ({check}).")


def _hash_mismatch(name, url, sha256, cache_dir, fname):
    """Removes a cached file that failed get_file's full-hash check; the error naming both."""
    path = _cache_path(cache_dir, fname)
    actual = sha256_of(path) if os.path.exists(path) else "unavailable"
    _remove(path)
    return ValueError(f"sha256 mismatch for '{name}' ({url}): expected {sha256}, got "
                      f"{actual}.")


def _cache_path(cache_dir, fname):
    """Where keras.utils.get_file puts `fname` (same rules as get_file)."""
    if cache_dir is None:
        try:  # what get_file uses; private in Keras 3.15 (no keras.config.keras_home)
            from keras.src.backend.config import keras_home
            cache_dir = keras_home()
        except ImportError:
            cache_dir = os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))
    base = os.path.expanduser(cache_dir)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return os.path.join(base, CACHE_SUBDIR, fname)


def _remove(path):
    if os.path.exists(path):
        os.remove(path)
