"""PyAV video backend (optional: ``pip install av`` or ``pip install keras-tin[video]``).

Decodes sequentially with FFmpeg's frame threading and stops after the last
frame a clip needs; only the frames kept are converted to RGB.
"""

from keras_tin.data import errors as err

try:
    import av
except ImportError as e:  # optional dependency: fail when used, with the fix
    raise ImportError("The 'pyav' video backend needs PyAV: pip install av "
                      "(or pip install 'keras-tin[video]').") from e


def _open(path):
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as e:
        raise err.DataError(path, err.UNREADABLE, f"PyAV cannot open it: {e}") from None
    if not container.streams.video:
        container.close()
        raise err.DataError(path, err.ZERO_FRAMES, "no video stream")
    return container


def metadata_count(path):
    with _open(path) as container:
        return max(0, int(container.streams.video[0].frames or 0))


def exact_count(path):
    with _open(path) as container:
        n = 0
        try:
            for _ in container.decode(video=0):
                n += 1
        except av.error.FFmpegError:
            pass  # frames up to a corrupt tail still count
        return n


def read(path, wanted):
    """Frames at the sorted unique indices ``wanted``; ``end`` is the real count if they ran out."""
    wanted_set = {int(i) for i in wanted}
    last = int(wanted[-1])
    got = {}
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pos = 0
        try:
            for frame in container.decode(stream):
                if pos in wanted_set:
                    got[pos] = frame.to_ndarray(format="rgb24")
                pos += 1
                if pos > last:
                    return got, None
        except av.error.FFmpegError:
            pass  # a corrupt tail ends the video where decoding stopped
        return got, pos
