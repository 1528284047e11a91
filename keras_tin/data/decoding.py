"""Decode only the frames a clip needs, from a video file or a folder of frames.

`read_frames(path, kind, choose)` is the one entry point: ``choose(num_frames)``
returns the frame indices wanted (any shape, repeats allowed) once the frame
count is known, and the frames come back as RGB uint8 in that order.

Video backends: "opencv" (default; seeks or grab-skips to the frames wanted,
never converting the others to RGB) and "pyav" (optional, imported lazily).
When a container's metadata lies about its frame count, decoding stops where
the frames really end, the indices are drawn again from the real count, the
real count is remembered for the rest of the run and a note is recorded.

Only regular files are opened as videos: a FIFO, device or folder where a video
is expected is a `DataError` (``not_a_file``) before anything opens it (opening a
FIFO would wait forever for a writer). File names that are not valid UTF-8
(``os.listdir`` returns them with surrogate escapes) reach OpenCV as bytes, or
through ``/proc/self/fd`` where an older OpenCV takes only str; a str with
surrogates would crash OpenCV's Python binding.
"""

import os
import threading

import cv2
import numpy as np

from keras_tin.data import errors as err
from keras_tin.data import frame_folders
from keras_tin.data.files import check_regular_file
from keras_tin.data.files import is_utf8

BACKENDS = ("opencv", "pyav")
KINDS = ("video", "frames")

# real frame counts learned while decoding (metadata lied, or was missing)
_known_counts = {}
_known_lock = threading.Lock()


def read_frames(path, kind, choose, backend="opencv", seek=True, log=None):
    """Decode the frames ``choose(num_frames)`` asks for.

    Args:
      path: a video file (kind "video") or a folder of frame images (kind "frames").
      choose: callable mapping the frame count to an integer index array.
      backend: "opencv" or "pyav" for videos.
      seek: let the OpenCV backend seek over long gaps instead of grabbing every frame.
      log: optional `ErrorLog` for notes (frame-count mismatches).

    Returns:
      ``(frames, num_frames)``: a list of ``(H, W, 3)`` RGB uint8 arrays in the
      order of ``choose(num_frames).ravel()``, and the frame count used.

    Raises:
      DataError: the file is missing, unreadable, or has no decodable frame.
    """
    path = os.fspath(path)
    if kind == "frames":
        return frame_folders.read_frames(path, choose)
    if kind != "video":
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
    check_regular_file(path)
    reader = _backend(backend)
    with _known_lock:
        count = _known_counts.get(path)
    metadata = None  # the real count, once learned, saves opening the file twice per read
    if count is None:
        metadata = reader.metadata_count(path)
        count = metadata if metadata > 0 else reader.exact_count(path)
    if count <= 0:
        raise err.DataError(path, err.ZERO_FRAMES, "no decodable frame")
    for _ in range(3):
        indices = np.asarray(choose(count), np.int64).ravel()
        wanted = np.unique(indices)
        got, end = reader.read(path, wanted, seek=seek) if reader is _OpenCV else reader.read(path, wanted)
        if end is None:
            return [got[i] for i in indices], count
        if end == 0:
            said = f"container metadata says {metadata}" if metadata is not None else \
                f"an earlier read decoded {count}"
            raise err.DataError(path, err.ZERO_FRAMES, f"no decodable frame ({said})")
        # the frames end earlier than the metadata said: redraw from the real count
        if log is not None:
            said = f"metadata says {metadata}" if metadata is not None else \
                f"an earlier read decoded {count}"
            log.note(path, err.FRAME_COUNT_MISMATCH, f"{said}, decoded {end}")
        count = end
        with _known_lock:
            _known_counts[path] = count
    raise err.DataError(path, err.UNREADABLE, "frame count keeps changing while decoding")


def count_frames(path, kind="video", backend="opencv", exact=False):
    """The frame count: container metadata, or (``exact=True``) by decoding everything."""
    path = os.fspath(path)
    if kind == "frames":
        return frame_folders.count_frames(path)
    check_regular_file(path)
    reader = _backend(backend)
    return reader.exact_count(path) if exact else reader.metadata_count(path)


def _capture(path):
    """``cv2.VideoCapture`` on ``path``, also for names that are not valid UTF-8."""
    if is_utf8(path):
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:  # recent OpenCV takes the raw bytes of the name
        return cv2.VideoCapture(os.fsencode(path), cv2.CAP_FFMPEG)
    except TypeError:
        pass
    if os.path.isdir("/proc/self/fd"):  # Linux: FFmpeg reopens the file through our descriptor
        fd = os.open(path, os.O_RDONLY)
        try:
            return cv2.VideoCapture(f"/proc/self/fd/{fd}", cv2.CAP_FFMPEG)
        finally:
            os.close(fd)
    raise err.DataError(path, err.UNREADABLE, "the name is not valid UTF-8 and this OpenCV "
                        "cannot open such names: rename the file or use backend='pyav'")


def _backend(name):
    if name == "opencv":
        return _OpenCV
    if name == "pyav":
        from keras_tin.data import pyav_backend  # optional dependency, imported when asked for

        return pyav_backend
    raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={name!r}")


class _OpenCV:
    """OpenCV's FFmpeg reader. All methods are static; cv2 releases the GIL while decoding."""

    # Seeking makes FFmpeg restart from the previous keyframe, so it only pays
    # over a gap longer than a typical GOP; shorter gaps are grabbed (decoded,
    # not converted).
    SEEK_GAP = 48

    @staticmethod
    def _open(path):
        cap = _capture(path)
        if not cap.isOpened():
            cap.release()
            raise err.DataError(path, err.UNREADABLE, "OpenCV cannot open it")
        return cap

    @staticmethod
    def metadata_count(path):
        cap = _OpenCV._open(path)
        try:
            return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            cap.release()

    @staticmethod
    def exact_count(path):
        cap = _OpenCV._open(path)
        try:
            n = 0
            while cap.grab():
                n += 1
            return n
        finally:
            cap.release()

    @staticmethod
    def read(path, wanted, seek=True):
        """Frames at the sorted unique indices ``wanted``; ``end`` is the real count if they ran out."""
        cap = _OpenCV._open(path)
        got = {}
        try:
            pos = 0  # index of the next frame the reader returns
            for index in wanted:
                index = int(index)
                if seek and index - pos > _OpenCV.SEEK_GAP:
                    if cap.set(cv2.CAP_PROP_POS_FRAMES, index) and \
                            int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == index:
                        pos = index
                    else:  # could not seek: reopen and grab from the start
                        cap.release()
                        cap, pos = _OpenCV._open(path), 0
                while pos < index:
                    if not cap.grab():
                        return got, pos
                    pos += 1
                ok, frame = cap.read()
                if not ok or frame is None:
                    return got, pos
                pos += 1
                got[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            return got, None
        finally:
            cap.release()
