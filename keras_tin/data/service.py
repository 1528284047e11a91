"""Decoding on a `tf.data` service: ``load_dataset(..., service="grpc://host:port")``.

The dispatcher and its workers are TensorFlow's own (`tf.data.experimental.service`),
started by ``keras-tin data-service dispatcher|worker`` (see `start_dispatcher`,
`start_worker`). The client sends the pipeline up to decoded, augmented uint8 clips;
each worker opens the videos it is given, and the client labels, batches and casts.

Videos are decoded in Python (OpenCV or PyAV through ``tf.numpy_function``), and a
TensorFlow graph cannot carry a Python function to another process: the graph names
the loader by a token that holds its whole description (the listed videos and the
sampling and augmentation settings, compressed), and a worker started by
``keras-tin data-service worker`` builds the same `ClipLoader` from it on first use. A
plain TensorFlow worker cannot run keras_tin pipelines.

Sharding: ``ShardingPolicy.DYNAMIC`` (TensorFlow's "distributed epoch"): the dispatcher
hands out one video index at a time, so each video of an epoch is decoded by one worker
at most, and workers can join or leave. A worker killed mid-epoch loses the videos it
was decoding (TensorFlow's at-most-once guarantee); the epoch goes on with the other
workers. Nothing is lost silently: each element carries its video index, the client
counts what arrived, and `ServiceLedger.missing` lists what an epoch did not deliver.

The skip report survives: a worker returns, with each element, what its loader
recorded for that video (the skip reason, decode notes) and the client records it in
its own `ErrorLog`, so ``info.errors`` and ``--report`` read as with local decoding.

Not the same as local decoding: the element order (workers race), and with
``training=True`` the random crops and flips (seeded per worker). Test-time clips
(``training=False``) are identical.
"""

import base64
import json
import threading
import zlib

import numpy as np
import tensorflow as tf

from keras_tin.data import errors as err

TOKEN_PREFIX = "keras_tin.clips:"
_LOADERS = {}  # token -> callable: strong references (TensorFlow keeps weak ones)
_LOCK = threading.Lock()


def check_address(service):
    if not isinstance(service, str) or "://" not in service or not service.split("://")[1]:
        raise ValueError(f"service must be 'grpc://HOST:PORT' (a keras-tin data-service "
                         f"dispatcher). Received: service={service!r}")
    return service


def _spec(loader):
    return {"samples": [[s.path, s.kind] for s in loader.samples], "frames": loader.frames,
            "training": loader.training, "size": loader.size, "sampling": loader.sampling,
            "num_clips": loader.num_clips, "num_crops": loader.num_crops,
            "flip": bool(loader.flip), "resize_short": loader.resize_short,
            "scales": list(loader.scales), "dense_stride": loader.dense_stride,
            "backend": loader.backend, "seek": bool(loader.seek)}


def token_of(loader):
    text = json.dumps(_spec(loader), sort_keys=True).encode("utf-8")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(zlib.compress(text, 9)).decode("ascii")


def _loader_from_token(token):
    from keras_tin.data.adapters import Sample
    from keras_tin.data.pipeline import ClipLoader

    spec = json.loads(zlib.decompress(base64.urlsafe_b64decode(token[len(TOKEN_PREFIX):])))
    samples = [Sample(path, -1, kind) for path, kind in spec.pop("samples")]
    spec["scales"] = tuple(spec["scales"])
    return ClipLoader(samples, spec.pop("frames"), spec.pop("training"), spec.pop("size"),
                      log=err.ErrorLog("skip"), **spec)


def _element_fn(loader):
    """index, seed -> (views, ok, report): report is JSON of what the loader recorded
    for this video (empty when nothing)."""
    def load(index, seed):
        views, ok = loader.load(index, seed)
        path = loader.samples[int(index)].path
        report = {}
        if not ok:
            report["skip"] = next((s for s in loader.log.skipped() if s["path"] == path), None)
        notes = [[k, d] for (p, k), d in list(loader.log._notes.items()) if p == str(path)]
        if notes:
            report["notes"] = notes
        return views, ok, np.array(json.dumps(report) if report else "", dtype=object)

    return load


def _register(token, func):
    from tensorflow.python.ops import script_ops

    with _LOCK:
        _LOADERS[token] = func
        script_ops._py_funcs._funcs[token] = func


def install_resolver():
    """In a worker process: lets TensorFlow's Python-function registry build a loader for
    any keras_tin token it has not seen (called by `start_worker`)."""
    from tensorflow.python.ops import script_ops

    registry = script_ops._py_funcs
    if getattr(registry, "_keras_tin_resolver", False):
        return
    plain_get = registry.get

    def get(token, default=None):
        func = plain_get(token, None)
        key = token.decode("ascii") if isinstance(token, bytes) else token
        if func is None and isinstance(key, str) and key.startswith(TOKEN_PREFIX):
            with _LOCK:
                func = _LOADERS.get(key)
            if func is None:
                func = _element_fn(_loader_from_token(key))
                _register(key, func)
        return default if func is None else func

    registry.get = get
    registry._keras_tin_resolver = True


class ServiceLedger:
    """Which videos the client received in the current pass over the dataset."""

    def __init__(self, samples):
        self.samples = samples
        self._lock = threading.Lock()
        self.received = []

    def record(self, index):
        with self._lock:
            self.received.append(int(index))

    def reset(self):
        with self._lock:
            self.received = []

    def missing(self):
        """Paths of the videos not received since the last `reset` (a killed worker's)."""
        with self._lock:
            got = set(self.received)
        return [s.path for i, s in enumerate(self.samples) if i not in got]

    def duplicates(self):
        with self._lock:
            return len(self.received) - len(set(self.received))


def service_elements(loader, info, service, shuffle=False, seed=None, deterministic=False,
                     label_of=None, job_name=None, worker_batch=8):
    """``(clips, label, ok)`` elements decoded on the service (see the module docstring).
    Workers send ``worker_batch`` videos per message (one gRPC round trip per video costs
    more than decoding a small clip); the client unbatches, records, filters, rebatches."""
    check_address(service)
    token = token_of(loader)
    func = _element_fn(loader)
    _register(token, func)
    views, frames, size = loader.views, loader.frames, loader.size
    n = len(info.samples)

    def remote(index):
        element_seed = tf.random.uniform([], maxval=2 ** 62, dtype=tf.int64, seed=seed)
        from tensorflow.python.ops import gen_script_ops

        clips, ok, report = gen_script_ops.py_func_stateless(
            input=[index, element_seed], token=token, Tout=[tf.uint8, tf.bool, tf.string])
        clips.set_shape((views, frames, size, size, 3))
        ok.set_shape(())
        report.set_shape(())
        return index, clips, ok, report

    ds = tf.data.Dataset.range(n).map(remote, num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=bool(deterministic))
    ds = ds.batch(worker_batch).prefetch(2)
    ds = ds.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=service, job_name=job_name))
    ds = ds.unbatch()
    ledger = ServiceLedger(info.samples)
    info.service_ledger = ledger
    errors = info.errors

    def record(index, report):
        ledger.record(index)
        text = report.decode("utf-8") if isinstance(report, bytes) else str(report)
        if text:
            found = json.loads(text)
            path = info.samples[int(index)].path
            skip = found.get("skip")
            if skip and not errors.was_skipped(path):
                errors.skip(err.DataError(path, skip["reason"], skip["detail"]),
                            stage=f"{skip['stage']} (data service)")
            for kind, detail in found.get("notes", []):
                errors.note(path, kind, detail)
        return np.int64(index)

    def on_client(index, clips, ok, report):
        index = tf.numpy_function(record, [index, report], tf.int64, stateful=True)
        index.set_shape(())
        return clips, label_of(index), ok

    ds = ds.map(on_client)
    if shuffle:
        ds = ds.shuffle(min(n, 64), seed=seed, reshuffle_each_iteration=True)
    return ds


def start_dispatcher(port=0, worker_timeout_ms=3000):
    """A dispatcher on ``port`` (0: any free one); returns the server (``.target``)."""
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, protocol="grpc", worker_timeout_ms=worker_timeout_ms)
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher, port=0, host="localhost", heartbeat_interval_ms=500):
    """A worker of ``dispatcher`` ("host:port" or "grpc://host:port") that can run
    keras_tin pipelines; returns the server."""
    install_resolver()
    address = dispatcher.split("://", 1)[-1]
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=address, port=port, protocol="grpc",
        worker_address=f"{host}:%port%", heartbeat_interval_ms=heartbeat_interval_ms)
    return tf.data.experimental.service.WorkerServer(config)
