"""``--strategy``: data-parallel training past one device.

TensorFlow backend (`tf.distribute`):
  - "default": one device (the first GPU if any, else the CPU).
  - "mirrored": `tf.distribute.MirroredStrategy` over the GPUs of this host (over all
    logical CPU devices when there is no GPU, which is how the tests run it).
  - "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy`; each host runs the same
    command with its own ``TF_CONFIG`` (cluster spec and task index), set before TensorFlow
    starts. Each worker decodes only its share of every epoch's videos (file-level
    sharding: ``Distribution.input_shard``); the first worker ("chief", or worker 0 when
    there is no chief) alone writes the run folder, which must be on storage every worker
    can read: on a rerun every worker resumes from the chief's backup. A worker that dies
    makes the others fail (gRPC error, or after ``KERAS_TIN_COLLECTIVE_TIMEOUT`` seconds
    of a collective without it); rerun every worker to resume.
  - "tpu": `tf.distribute.TPUStrategy` on the TPU the cluster resolver finds.
JAX backend (Keras distribution API):
  - "data_parallel": `keras.distribution.DataParallel` over all JAX devices, or the first
    ``devices`` of them (``--devices N``).

Batch and learning rate: ``--batch-size`` is per replica; the dataset is batched at
the global batch ``batch_size * replicas`` and Keras splits each batch across the
replicas, averages the per-replica gradients (all-reduce) and applies one update,
so a step on R replicas equals a step on one device with the same global batch
(except BatchNorm statistics, which each replica computes on its own slice; partial
BN freezes all but the first BN layer). The learning rate is scaled linearly with
the global batch (see `keras_tin.training.optimizers.scaled_lr`).
"""

import contextlib

import keras

from keras_tin.training.checks import TrainingError


class Distribution:
    """What the trainer needs: a scope to build/compile in, the replica count, and for
    multi-worker runs which worker this process is (``num_workers``, ``worker_index``,
    ``is_chief``: the one worker that writes the run folder)."""

    def __init__(self, name, strategy=None, num_replicas=1, num_workers=1, worker_index=0,
                 is_chief=True):
        self.name, self.strategy, self.num_replicas = name, strategy, num_replicas
        self.num_workers, self.worker_index, self.is_chief = num_workers, worker_index, is_chief

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def input_shard(self):
        """``(num_workers, worker_index)`` when each worker must read its own videos."""
        return (self.num_workers, self.worker_index) if self.num_workers > 1 else None

    def distribute_dataset(self, dataset):
        """Multi-worker: hands each worker's own (already sharded, batched at its part of
        the global batch) dataset to tf.distribute as is, with no re-sharding."""
        if dataset is None or self.num_workers == 1 or self.strategy is None:
            return dataset
        return self.strategy.distribute_datasets_from_function(lambda context: dataset)


def _reduce_nested(strategy, tf):
    """Two calls Keras 3's fit makes that MultiWorkerMirroredStrategy rejects: it reduces
    a whole (clips, labels) batch with ``strategy.reduce`` to learn the input shapes (one
    tensor only: "Attempt to convert a value (PerReplica...)"), and reduces the scalar
    loss and metrics with ``axis=0`` ("Invalid reduction dimension 0 for input with 0
    dimensions"). Reduce each tensor on its own, a scalar over the replicas only."""
    reduce = strategy.reduce

    def rank(v):
        local = strategy.experimental_local_results(v) if hasattr(v, "values") else (v,)
        return getattr(local[0], "shape", tf.TensorShape(None)).rank

    def reduce_each(reduce_op, value, axis=None):
        return tf.nest.map_structure(
            lambda v: reduce(reduce_op, v, None if rank(v) == 0 else axis), value)

    strategy.reduce = reduce_each


COLLECTIVE_TIMEOUT_ENV = "KERAS_TIN_COLLECTIVE_TIMEOUT"


def _worker_of(resolver):
    """``(num_workers, index, is_chief)`` from the cluster resolver (TF_CONFIG)."""
    spec = resolver.cluster_spec().as_dict()
    order = [("chief", i) for i in range(len(spec.get("chief", [])))]
    order += [("worker", i) for i in range(len(spec.get("worker", [])))]
    me = (resolver.task_type, resolver.task_id)
    if me not in order:
        raise ValueError(f"TF_CONFIG task {me} is not a chief or worker of the cluster "
                         f"{spec}; multi_worker needs every task to train.")
    chief = me == order[0]
    return len(order), order.index(me), chief


def _cpu_or_gpu_devices(tf):
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_distribution(name="default", devices=None):
    """A `Distribution` for ``name`` (see the module docstring)."""
    backend = keras.backend.backend()
    if name == "data_parallel":
        if backend != "jax":
            raise ValueError("strategy='data_parallel' is the Keras distribution API for the JAX "
                             f"backend (KERAS_BACKEND=jax). Received backend={backend!r}; on "
                             "TensorFlow use strategy='mirrored' or 'multi_worker'.")
        available = keras.distribution.list_devices()
        if isinstance(devices, int):
            if not 1 <= devices <= len(available):
                raise ValueError(f"devices must be between 1 and the {len(available)} JAX "
                                 f"devices found ({available}). Received: devices={devices}. "
                                 "On CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N "
                                 "(set before jax is imported) makes N devices.")
            devices = available[:devices]
        dist = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(dist)
        return Distribution(name, None, len(devices or available))
    if name == "default":
        return Distribution(name)
    if backend != "tensorflow":
        raise ValueError(f"strategy={name!r} uses tf.distribute and needs the TensorFlow backend. "
                         f"Received backend={backend!r}; on JAX use strategy='data_parallel'.")
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices or _cpu_or_gpu_devices(tf))
    elif name == "multi_worker":
        import os

        timeout = float(os.environ.get(COLLECTIVE_TIMEOUT_ENV, "0")) or None
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        _reduce_nested(strategy, tf)
        resolver = strategy.cluster_resolver
        if resolver is not None and resolver.cluster_spec().as_dict():
            workers, index, chief = _worker_of(resolver)
            return Distribution(name, strategy, strategy.num_replicas_in_sync, workers, index,
                                chief)
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        raise ValueError("strategy must be one of 'default', 'mirrored', 'multi_worker', 'tpu', "
                         f"'data_parallel'. Received: strategy={name!r}")
    return Distribution(name, strategy, strategy.num_replicas_in_sync)


class WorkerLost(TrainingError):
    """A multi-worker run stopped because another worker died or cannot be reached."""


def lost_worker_error(error, dist, epochs_done):
    """A `WorkerLost` with what to do, when ``error`` is TensorFlow's report of a peer
    that died during a collective (or of its timeout); None for any other error."""
    if dist is None or dist.num_workers < 2:
        return None
    import tensorflow as tf

    kinds = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
             tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)
    if not isinstance(error, kinds):
        return None
    first = str(error).strip().split("\n")[0][:300]
    kept = (f"the run folder keeps epoch {epochs_done}, the last finished one" if epochs_done
            else "no epoch had finished, so a rerun starts from the beginning")
    return WorkerLost(
        f"worker {dist.worker_index} of {dist.num_workers}: another worker of the cluster "
        f"stopped or cannot be reached ({type(error).__name__}: {first}); {kept}. Start every "
        f"worker again with the same command and TF_CONFIG to resume.")
