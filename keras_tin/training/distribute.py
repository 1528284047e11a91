"""``--strategy``: data-parallel training past one device.

TensorFlow backend (`tf.distribute`):
  - "default": one device (the first GPU if any, else the CPU).
  - "mirrored": `tf.distribute.MirroredStrategy` over the GPUs of this host (over all
    logical CPU devices when there is no GPU, which is how the tests run it).
  - "multi_worker": `tf.distribute.MultiWorkerMirroredStrategy`; each host runs the same
    command with its own ``TF_CONFIG`` (cluster spec and task index).
  - "tpu": `tf.distribute.TPUStrategy` on the TPU the cluster resolver finds.
JAX backend (Keras distribution API):
  - "data_parallel": `keras.distribution.DataParallel` over all JAX devices.

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


class Distribution:
    """What the trainer needs: a scope to build/compile in, and the replica count."""

    def __init__(self, name, strategy=None, num_replicas=1):
        self.name, self.strategy, self.num_replicas = name, strategy, num_replicas

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


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
        dist = keras.distribution.DataParallel(devices=devices)
        keras.distribution.set_distribution(dist)
        return Distribution(name, None, len(devices or keras.distribution.list_devices()))
    if name == "default":
        return Distribution(name)
    if backend != "tensorflow":
        raise ValueError(f"strategy={name!r} uses tf.distribute and needs the TensorFlow backend. "
                         f"Received backend={backend!r}; on JAX use strategy='data_parallel'.")
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(devices or _cpu_or_gpu_devices(tf))
    elif name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        raise ValueError("strategy must be one of 'default', 'mirrored', 'multi_worker', 'tpu', "
                         f"'data_parallel'. Received: strategy={name!r}")
    return Distribution(name, strategy, strategy.num_replicas_in_sync)
