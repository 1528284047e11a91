"""Folders of extracted frames (how Something-Something V1 and Jester ship).

A folder holds one image per frame (``00001.jpg``, ``00002.jpg``, ... or any
names that sort in frame order). Only the images a clip needs are read. The
sorted listing is cached per folder, compactly when names follow a numbered
pattern, so later epochs skip the directory scan. A frame that is not a regular
file (a FIFO would block the reader) makes the folder unreadable without being
opened; frame names that are not valid UTF-8 are read through Python.
"""

import os
import re
import threading

import cv2
import numpy as np

from keras_tin.data import errors as err
from keras_tin.data.files import is_utf8
from keras_tin.data.files import path_problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z]+)$")

_listings = {}
_lock = threading.Lock()


class _Numbered:
    """``prefix{start+i:0{width}d}ext`` for i < count: no per-frame strings kept."""

    def __init__(self, prefix, start, width, ext, count):
        self.prefix, self.start, self.width, self.ext, self.count = prefix, start, width, ext, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        return f"{self.prefix}{self.start + i:0{self.width}d}{self.ext}"


def _listing(folder):
    with _lock:
        cached = _listings.get(folder)
    if cached is not None:
        return cached
    if not os.path.exists(folder):
        raise err.DataError(folder, err.MISSING_FILE)
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    except OSError as e:  # not a folder, permission denied, ...
        raise err.DataError(folder, err.UNREADABLE, f"cannot list frames: {e.strerror or e}") from None
    listing = _compact(names) or names
    with _lock:
        _listings[folder] = listing
    return listing


def _compact(names):
    if not names:
        return None
    m = _NUMBERED.match(names[0])
    if m is None:
        return None
    prefix, first, ext = m.group(1), m.group(2), m.group(3)
    numbered = _Numbered(prefix, int(first), len(first), ext, len(names))
    if all(numbered[i] == name for i, name in enumerate(names)):
        return numbered
    return None


def count_frames(folder):
    return len(_listing(os.fspath(folder)))


def read_frames(folder, choose):
    """Frames ``choose(count)`` of ``folder`` as RGB uint8, and the count used."""
    listing = _listing(folder)
    if len(listing) == 0:
        raise err.DataError(folder, err.ZERO_FRAMES, "no frame images in the folder")
    indices = np.asarray(choose(len(listing)), np.int64).ravel()
    decoded = {}
    for i in np.unique(indices):
        name = listing[int(i)]
        image = _imread(folder, name)
        if image is None:
            raise err.DataError(folder, err.UNREADABLE,
                                f"cannot decode frame {err.display_path(name)}")
        decoded[int(i)] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return [decoded[int(i)] for i in indices], len(listing)


def _imread(folder, name):
    path = os.path.join(folder, name)
    problem = path_problem(path)
    if problem is not None:
        raise err.DataError(folder, err.UNREADABLE, f"frame {err.display_path(name)}: {problem}")
    if is_utf8(path):
        return cv2.imread(path, cv2.IMREAD_COLOR)
    # cv2.imread would crash on a str with surrogate escapes: read the bytes ourselves
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
