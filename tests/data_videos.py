"""Tiny test videos and frame folders whose frames say which frame they are.

Frame ``i`` is flat RGB ``(value(i), 60, 200)``: the red level encodes the index
(survives any codec within a few levels), blue > red checks channel order.
"""

import os

import cv2
import numpy as np

WIDTH, HEIGHT = 64, 48
STEP = 7
BASE = 10

# codec name -> (writer, container extension)
CODECS = {
    "mpeg4-mp4": ("opencv", "mp4v", ".mp4"),
    "mpeg4-avi": ("opencv", "XVID", ".avi"),
    "mjpeg": ("opencv", "MJPG", ".avi"),
    "vp9": ("pyav", "libvpx-vp9", ".webm"),
    "h264": ("pyav", "libx264", ".mp4"),
}


def value(i):
    return BASE + STEP * (i % 30)


def frame(i, width=WIDTH, height=HEIGHT):
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = value(i), 60, 200
    return img


def index_of(rgb_frame):
    """Which frame a decoded RGB frame shows (from its mean red level)."""
    return int(round((float(np.mean(rgb_frame[..., 0])) - BASE) / STEP))


def write_video(path, num_frames, codec="mpeg4-mp4", width=WIDTH, height=HEIGHT, fps=25):
    writer, fourcc, ext = CODECS[codec]
    path = str(path)
    if not path.endswith(ext):
        path += ext
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if writer == "opencv":
        out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        assert out.isOpened(), f"OpenCV cannot write {codec}"
        for i in range(num_frames):
            out.write(cv2.cvtColor(frame(i, width, height), cv2.COLOR_RGB2BGR))
        out.release()
    else:
        import av

        with av.open(path, "w") as container:
            stream = container.add_stream(fourcc, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if fourcc == "libx264":
                stream.options = {"crf": "18", "g": "4"}
            for i in range(num_frames):
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame(i, width, height),
                                                                       format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_frames(folder, num_frames, width=WIDTH, height=HEIGHT, start=1):
    os.makedirs(folder, exist_ok=True)
    for i in range(num_frames):
        cv2.imwrite(os.path.join(str(folder), f"{start + i:05d}.jpg"),
                    cv2.cvtColor(frame(i, width, height), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return str(folder)


def truncate(path, fraction=0.5):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(int(size * fraction))
    return path
