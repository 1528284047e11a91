"""What a path is, found without opening it, and names that are not valid UTF-8.

Opening a FIFO blocks until something writes to it, and a device can be endless,
so only regular files are read as videos or frame images. Checks use ``os.stat``
and never open the path.
"""

import os
import stat

from keras_tin.data import errors as err


def _file_type(mode):
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def describe(path):
    """"a regular file", "a folder", "a FIFO", ... (following links; never opens ``path``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"unknown ({e.strerror or e})"
    return "a regular file" if stat.S_ISREG(mode) else _file_type(mode)


def path_problem(path, folders=False):
    """None when ``path`` is a regular file (or, with ``folders``, a folder), else what it is.

    Never opens the path: ``"no such file"``, ``"cannot stat it: ..."``, or e.g.
    ``"a FIFO, not a regular file"``.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as e:  # permission denied on a parent, a too-long name, a symlink loop
        return f"cannot stat it: {e.strerror or e}"
    if stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode)):
        return None
    return f"{_file_type(mode)}, not a regular file" + (" or folder" if folders else "")


def check_regular_file(path):
    """Raise a `DataError` unless ``path`` is a regular file (checked without opening it):
    ``missing_file``, ``not_a_file`` (a FIFO, device, socket or folder) or ``unreadable``."""
    problem = path_problem(path)
    if problem is None:
        return
    if problem == "no such file":
        raise err.DataError(path, err.MISSING_FILE)
    if problem.startswith("cannot stat"):
        raise err.DataError(path, err.UNREADABLE, problem)
    raise err.DataError(path, err.NOT_A_FILE, f"{problem}: not opened")


def is_utf8(path):
    """Whether the str ``path`` encodes to UTF-8 (False for names with surrogate escapes)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
