"""Input-pipeline throughput: keras_tin.data vs the naive tf.data video recipe vs TIN-R50.

Writes a small set of 320x240 videos (UCF101's size), then measures, side by
side in one run, clips/s of 8-frame 224x224 training clips from:

  naive   the TensorFlow video tutorial's approach: a Python generator decodes the
          whole video with OpenCV, then picks T frames (TSN segments), crops and
          resizes them; `tf.data.Dataset.from_generator`, batch, prefetch.
  ours    `keras_tin.data.load_dataset("folder", ...)`: parallel map, only the
          needed frames decoded (seek/grab-skip), crop before resize.
  model   training steps of TINResNet50(frames=8, classes=10) at 224 px: the rate
          at which training consumes clips on this machine.

    python benchmarks/bench_data_pipeline.py [--videos 16] [--frames-per-video 150]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_tin.data as kd  # noqa: E402
from keras_tin.data import augmentation  # noqa: E402
from keras_tin.data import sampling  # noqa: E402

T, SIZE = 8, 224


def write_videos(root, count, length, codec, width=320, height=240):
    fourcc, ext = {"mpeg4": ("XVID", ".avi"), "mjpeg": ("MJPG", ".avi"),
                   "mp4v": ("mp4v", ".mp4")}[codec]
    rng = np.random.default_rng(0)
    paths = []
    base = rng.integers(0, 255, (height // 8, width // 8, 3), np.uint8)
    for i in range(count):
        cls = f"class{i % 4}"
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        path = os.path.join(root, cls, f"video{i}{ext}")
        out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 25, (width, height))
        for t in range(length):  # moving texture: codecs do real work on it
            img = cv2.resize(np.roll(base, t, axis=1), (width, height), interpolation=cv2.INTER_LINEAR)
            out.write(img)
        out.release()
        paths.append((path, i % 4))
    return paths


def naive_dataset(paths, batch_size):
    def generator():
        rng = np.random.default_rng(0)
        while True:
            for j in rng.permutation(len(paths)):
                path, label = paths[j]
                cap = cv2.VideoCapture(path)
                frames = []
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                cap.release()
                idx = sampling.segment_indices(len(frames), T, True, rng)
                clip = augmentation.augment_train([frames[i] for i in idx], SIZE, rng)
                yield clip.astype(np.float32), np.int32(label)

    spec = (tf.TensorSpec((T, SIZE, SIZE, 3), tf.float32), tf.TensorSpec((), tf.int32))
    return tf.data.Dataset.from_generator(generator, output_signature=spec) \
        .batch(batch_size).prefetch(tf.data.AUTOTUNE)


def clips_per_second(ds, batches, batch_size):
    it = iter(ds)
    next(it)  # warm-up: graph building, first file opens, thread pools
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def model_clips_per_second(steps, batch_size):
    import keras

    from keras_tin.applications import TINResNet50

    model = TINResNet50(frames=T, classes=10, input_shape=(T, SIZE, SIZE, 3), weights=None)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, T, SIZE, SIZE, 3)).astype("float32")
    y = np.zeros((batch_size,), "int32")
    model.train_on_batch(x, y)  # compile + first step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--frames-per-video", type=int, default=150)
    p.add_argument("--codec", default="mpeg4", choices=["mpeg4", "mjpeg", "mp4v"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--model-steps", type=int, default=1)
    p.add_argument("--model-batch-size", type=int, default=2)
    p.add_argument("--no-model", action="store_true")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        paths = write_videos(root, args.videos, args.frames_per_video, args.codec)
        print(f"wrote {args.videos} videos, 320x240, {args.frames_per_video} frames, "
              f"{args.codec} ({time.perf_counter() - t0:.1f}s); cores={os.cpu_count()}")
        results = {}
        results["naive (whole-video decode, from_generator)"] = clips_per_second(
            naive_dataset(paths, args.batch_size), args.batches, args.batch_size)
        for name, kwargs in [("keras_tin.data (opencv, seek)", {}),
                             ("keras_tin.data (opencv, grab-skip only)", {"seek": False})]:
            ds = kd.load_dataset("folder", root, split="train", frames=T, batch_size=args.batch_size,
                                 image_size=SIZE, seed=0, **kwargs)
            results[name] = clips_per_second(ds.repeat(), args.batches, args.batch_size)
        if not args.no_model:
            results[f"TIN-R50 training consumption (batch {args.model_batch_size})"] = \
                model_clips_per_second(args.model_steps, args.model_batch_size)
    naive = results["naive (whole-video decode, from_generator)"]
    for name, rate in results.items():
        print(f"{name:48s} {rate:8.2f} clips/s   {rate / naive:5.2f}x naive")


if __name__ == "__main__":
    main()
