"""The tf.data builder: `load_dataset(name, root, split, ...)` -> batches of (clips, labels).

Per video, in parallel (``num_parallel_calls``, AUTOTUNE by default): draw frame
indices (segment or dense sampling), decode only those frames, crop/resize them
(the same box and flip for every frame), and yield uint8 views; the batch is
then cast to float32 (and optionally normalised) in one place. Shuffling is at
the video level, before decoding, so it costs nothing per frame.

Randomness is per element: each video gets a seed from a seeded
``tf.data.Dataset.random`` stream (new each epoch), so ``seed=`` with
``deterministic=True`` reproduces every clip, crop and flip exactly.
"""

import logging
import os

import numpy as np
import tensorflow as tf

from keras_tin.data import augmentation
from keras_tin.data import decoding
from keras_tin.data import errors as err
from keras_tin.data import sampling as sampling_lib
from keras_tin.data.adapters import list_samples

logger = logging.getLogger("keras_tin.data")
READ_TRACE_ENV = "KERAS_TIN_READ_TRACE"  # test hook: append "pid path" per video read


def _normalizations():
    from keras_tin.applications.video_model import NORMALIZATIONS  # the models' own constants

    return NORMALIZATIONS


class ClipLoader:
    """Python side of the pipeline: index + seed -> ``(views, ok)``; never raises under "skip"."""

    def __init__(self, samples, frames, training, size, sampling="segment", num_clips=1,
                 num_crops=1, flip=True, resize_short=256, scales=augmentation.TRAIN_SCALES,
                 dense_stride=None, backend="opencv", seek=True, log=None):
        if sampling not in sampling_lib.SAMPLINGS:
            raise ValueError(f"sampling must be one of {sampling_lib.SAMPLINGS}. "
                             f"Received: sampling={sampling!r}")
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3. Received: num_crops={num_crops!r}")
        if training and num_crops != 1:
            raise ValueError("num_crops > 1 is a test-time protocol; training takes one random crop. "
                             f"Received: num_crops={num_crops}, training=True")
        self.samples, self.frames, self.training, self.size = samples, frames, training, size
        self.sampling, self.num_clips, self.num_crops = sampling, num_clips, num_crops
        self.flip, self.resize_short, self.scales = flip, resize_short, scales
        self.dense_stride, self.backend, self.seek = dense_stride, backend, seek
        self.log = log if log is not None else err.ErrorLog()
        self.views = num_clips * num_crops

    def choose(self, rng):
        return lambda n: sampling_lib.sample_indices(self.sampling, n, self.frames, self.training,
                                                     rng, self.num_clips, self.dense_stride)

    def load(self, index, seed=0):
        """``(views uint8 (V, T, S, S, 3), ok)``; views are clip-major, crops inner."""
        sample = self.samples[int(index)]
        if READ_TRACE_ENV in os.environ:  # test hook: which process read which video
            with open(os.environ[READ_TRACE_ENV], "a", encoding="utf-8") as f:
                f.write(f"{os.getpid()} {sample.path}\n")
        if self.log.was_skipped(sample.path):
            # found bad in an earlier epoch: not opened again, so neither our warning nor the
            # decoder's native messages repeat; the report already counts it
            return self._empty(), False
        rng = np.random.default_rng(np.uint64(np.int64(seed).view(np.uint64)))
        try:
            frames, count = decoding.read_frames(sample.path, sample.kind, self.choose(rng),
                                                 self.backend, self.seek, self.log)
            if count < self.frames:
                self.log.note(sample.path, err.LOOPED_SHORT_CLIP,
                              f"{count} frames < {self.frames}: frames repeat")
            views = []
            for c in range(self.num_clips):
                clip = frames[c * self.frames:(c + 1) * self.frames]
                if self.training:
                    views.append(augmentation.augment_train(clip, self.size, rng, self.flip,
                                                            self.scales)[None])
                else:
                    views.append(augmentation.augment_test(clip, self.size, self.resize_short,
                                                           self.num_crops))
            return np.concatenate(views), True
        except err.DataError as e:
            self.log.skip(e, stage="decoding")
        # a codec surprise, or a file that vanished or lost its permissions, is still a bad file
        except (cv2_error(), ValueError, IndexError, MemoryError, OSError) as e:
            self.log.skip(err.DataError(sample.path, err.UNREADABLE, f"{type(e).__name__}: {e}"),
                          stage="decoding")
        return self._empty(), False

    def _empty(self):
        return np.zeros((self.views, self.frames, self.size, self.size, 3), np.uint8)


def cv2_error():
    import cv2

    return cv2.error


def build_dataset(info, frames=8, training=None, batch_size=8, image_size=224, sampling="segment",
                  num_clips=1, num_crops=1, flip=None, shuffle=None, cache=False, seed=None,
                  deterministic=None, normalization=None, backend="opencv", seek=True,
                  resize_short=256, scales=augmentation.TRAIN_SCALES, dense_stride=None,
                  drop_remainder=None, num_parallel_calls=None, shard=None, service=None):
    """The tf.data pipeline over an already listed `DatasetInfo` (see `load_dataset`).

    ``shard=(num_shards, index)``: only every ``num_shards``-th video of each epoch's
    (shuffled) order, from ``index`` on, is decoded (file-level sharding for multi-worker
    training: with the same ``seed`` every worker draws the same order and seeds, so the
    shards are disjoint, cover the epoch, and ``batch_size`` is this shard's part of the
    global batch). ``service``: decode on a tf.data service (`keras_tin.data.service`).
    """
    training = info.split == "train" if training is None else bool(training)
    flip = info.flip if flip is None else bool(flip)
    shuffle = training if shuffle is None else bool(shuffle)
    deterministic = not training if deterministic is None else bool(deterministic)
    drop_remainder = training if drop_remainder is None else bool(drop_remainder)
    if normalization is not None and normalization not in _normalizations():
        raise ValueError(f"normalization must be None or one of {sorted(_normalizations())}. "
                         f"Received: normalization={normalization!r}")
    if not info.samples:
        raise ValueError(f"no usable samples in {info.name} {info.split} under {info.root} "
                         f"({info.errors.summary()})")
    loader = ClipLoader(info.samples, frames, training, image_size, sampling, num_clips, num_crops,
                        flip, resize_short, scales, dense_stride, backend, seek, info.errors)
    views = loader.views
    info.views = views
    label_of = _label_fn(info)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    def load(index, element_seed):
        clips, ok = tf.numpy_function(loader.load, [index, element_seed], [tf.uint8, tf.bool],
                                      stateful=False)
        clips.set_shape((views, frames, image_size, image_size, 3))
        ok.set_shape(())
        return clips, label_of(index), ok

    n = len(info.samples)
    if service is not None:
        from keras_tin.data import service as service_lib

        ds = service_lib.service_elements(loader, info, service, shuffle=shuffle, seed=seed,
                                          deterministic=deterministic, label_of=label_of,
                                          worker_batch=batch_size)
    else:
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)  # video level: cheap
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds))
        if shard is not None:
            num_shards, index = (int(v) for v in shard)
            if not 0 <= index < num_shards:
                raise ValueError(f"shard must be (num_shards, index) with 0 <= index < "
                                 f"num_shards. Received: shard={shard!r}")
            ds = ds.shard(num_shards, index)  # before decoding: each worker opens its videos
        ds = ds.map(load, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.filter(lambda clips, label, ok: ok)  # skipped videos leave no hole in the batch
    ds = ds.map(lambda clips, label, ok: (clips, label))
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    mean_std = _normalizations()[normalization] if normalization else None

    def finish(clips, label):
        # (B, V, T, S, S, 3) -> (B*V, T, S, S, 3): each video's views are adjacent
        clips = tf.reshape(clips, (-1, frames, image_size, image_size, 3))
        clips = tf.cast(clips, tf.float32)
        if mean_std is not None:
            mean, std = (tf.constant(v, tf.float32) for v in mean_std)
            clips = (clips - mean) / std
        return clips, tf.repeat(label, views, axis=0) if views > 1 else label

    ds = ds.map(finish, num_parallel_calls=parallel, deterministic=deterministic)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    ds = ds.with_options(options)
    ds.views = views  # read by keras_tin.data.average_views
    return ds


def _label_fn(info):
    """index -> label: int32 class index, or float32 multi-hot for multi-label datasets."""
    if not info.multilabel:
        table = tf.constant(np.array([s.label for s in info.samples], np.int32))
        return lambda index: tf.gather(table, index)
    # multi-hot rows are built per element from padded index lists: a dense N x K table
    # would take gigabytes for Multi-Moments in Time
    width = max(len(s.label) for s in info.samples)
    padded = np.full((len(info.samples), width), -1, np.int32)
    for i, s in enumerate(info.samples):
        padded[i, :len(s.label)] = s.label
    table, k = tf.constant(padded), info.num_classes

    def multi_hot(index):
        ids = tf.gather(table, index)  # (width,), -1 = padding, one_hot(-1) = zeros
        return tf.reduce_max(tf.one_hot(ids, k, dtype=tf.float32), axis=0)

    return multi_hot


def load_dataset(name, root, split="train", frames=8, training=None, batch_size=8, image_size=224,
                 sampling="segment", num_clips=1, num_crops=1, flip=None, shuffle=None, cache=False,
                 seed=None, deterministic=None, on_error="skip", report_path=None,
                 normalization=None, backend="opencv", fold=1, with_info=False, **kwargs):
    """A `tf.data.Dataset` of ``(clips, labels)`` batches for a benchmark or a folder of videos.

    Args:
      name: "something-v1", "something-v2", "jester", "kinetics400", "kinetics600",
        "ucf101", "hmdb51", "mmit" or "folder" (``root/[split/]class/video``).
        The layouts each expects are in ``keras_tin/data/adapters/<name>.py``. A flat
        "folder" (``root/class/video``, no split folders) is split per class by a fixed
        hash of the file names: ``val_fraction`` (0.2) of each class's videos for "val"
        and "test", the rest for "train", never one video in both (a log line says so).
      root: the dataset folder.
      split: "train", "val" (or "validation") or "test".
      frames: T, frames per clip.
      training: random sampling + multi-scale crop + flip; default ``split == "train"``.
        Otherwise the TSN test protocol: segment centres, short side 256, centre crop.
      batch_size: videos per batch.
      image_size: output side (224).
      sampling: "segment" (TSN: T segments, one frame each) or "dense" (T frames
        ``dense_stride`` apart, default ``64 // T``).
      num_clips, num_crops: test views per video: N temporal clips x 1 or 3 crops.
        With V = num_clips * num_crops > 1 a batch holds ``batch_size * V`` rows,
        each video's V views adjacent; `keras_tin.data.average_views` averages them.
      flip: random horizontal flip in training; default False for Something-Something,
        Jester (left/right is the label) and "folder" (your classes may be "wave left"
        and "wave right": pass ``flip=True`` when mirrored videos keep their label), True
        for Kinetics, UCF101, HMDB51 and Multi-Moments in Time.
      shuffle: shuffle videos each epoch; default ``training``.
      cache: cache decoded clips in memory (True) or in a file (a path). Cached
        training clips keep their first epoch's sampling and augmentation.
      seed: seeds shuffling, sampling and augmentation.
      deterministic: keep element order fixed (with ``seed``: identical runs). Default
        False in training (faster), True otherwise: evaluation batches then follow
        ``info.samples`` order (less skipped videos).
      on_error: "skip" (drop bad videos, count them, log one warning per file, optional
        ``report_path`` JSON report) or "raise" (fail on the first, naming the file).
        Skipped: missing files, unknown labels, FIFOs/devices/folders where a video file
        is expected (never opened), unreadable, corrupt or zero-frame videos and frame
        folders. A file skipped while decoding is not opened again in later epochs.
        Under "raise", iterating the dataset raises ``tf.errors.InvalidArgumentError``
        whose message holds ``DataError``'s text (reason and file); wrap the loop in
        ``keras_tin.data.raising_data_errors()`` to get the `DataError` itself
        (`average_views` does this).
      normalization: None (float32 RGB in [0, 255], what keras_tin models expect: they
        normalise inside) or "imagenet" / "inception" for models that do not.
      backend: "opencv" (default) or "pyav" (needs ``pip install av``).
      fold: UCF101 / HMDB51 split number (1-3).
      with_info: also return the `DatasetInfo` (class names, samples, error log).
      **kwargs: ``resize_short`` (256), ``scales`` ((1, .875, .75, .66)), ``dense_stride``,
        ``drop_remainder`` (default ``training``), ``num_parallel_calls``, ``seek`` (True),
        ``check_files`` (True), ``val_fraction`` (flat "folder" layout only, 0.2; 0 reads
        every video in every split), ``service`` ("grpc://HOST:PORT": decode on a
        tf.data service, see `keras_tin.data.service`; ``info.service_ledger`` then
        lists the videos an epoch did not deliver).

    Returns:
      ``dataset`` yielding ``(clips float32 (B*V, T, S, S, 3), labels)``, labels int32
      ``(B*V,)`` (float32 multi-hot ``(B*V, K)`` for "mmit"); or ``(dataset, info)``.
    """
    check_files = kwargs.pop("check_files", True)
    val_fraction = kwargs.pop("val_fraction", None)
    info = list_samples(name, root, split, fold=fold, on_error=on_error, report_path=report_path,
                        check_files=check_files, val_fraction=val_fraction)
    if info.errors.num_skipped:
        logger.warning("%s %s: %s", name, split, info.errors.summary())
    ds = build_dataset(info, frames=frames, training=training, batch_size=batch_size,
                       image_size=image_size, sampling=sampling, num_clips=num_clips,
                       num_crops=num_crops, flip=flip, shuffle=shuffle, cache=cache, seed=seed,
                       deterministic=deterministic, normalization=normalization, backend=backend,
                       **kwargs)
    return (ds, info) if with_info else ds
