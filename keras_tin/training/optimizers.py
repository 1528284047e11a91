"""The paper's optimiser: SGD + momentum with L2 weight decay, step learning rate.

Keras' own ``weight_decay=`` is decoupled (AdamW-style: ``w -= lr * wd * w`` beside
the momentum). The paper trains with PyTorch SGD, whose weight decay is an L2 term
added to the gradient *before* momentum, so under momentum 0.9 it acts about ten
times stronger than the decoupled form with the same number. `SGDL2` reproduces
the PyTorch behaviour: ``g += wd * w`` for kernels (rank >= 2), not for biases,
BatchNorm scales/offsets or other vectors (TSN's optimiser groups do the same).
Gradient clipping (``global_clipnorm``) runs before the decay term is added, as
``clip_grad_norm_`` runs before ``optimizer.step()`` in PyTorch.

Clipping under `tf.distribute`: Keras 3 clips each replica's gradients before the
all-reduce, so with R replicas the norm that is clipped is a per-replica one and
the step differs from the single-device step. `SGDL2` sums the replicas'
gradients first, clips the global gradient, and hands each replica its share of
the clipped sum, which the optimizer's own all-reduce adds back up: the same step
as one device on the global batch (tests/test_training_distribute.py checks it).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tin")
class SGDL2(keras.optimizers.SGD):
    """`keras.optimizers.SGD` with PyTorch-style (coupled) L2 weight decay on kernels.

    Args:
      l2: the decay coefficient (PyTorch's ``weight_decay``; 5e-4 in the paper).
      **kwargs: `keras.optimizers.SGD` arguments (learning_rate, momentum, nesterov,
        global_clipnorm, ...). Do not also pass ``weight_decay``.
    """

    def __init__(self, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2 and len(variable.shape) >= 2:
            gradient = ops.add(ops.cast(gradient, variable.dtype),
                               ops.multiply(ops.cast(self.l2, variable.dtype), variable))
        super().update_step(gradient, variable, learning_rate)

    def _clip_gradients(self, grads):
        if self.global_clipnorm and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync if context is not None else 1
            if replicas > 1:
                summed = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
                clipped, _ = tf.clip_by_global_norm(summed, self.global_clipnorm)
                return [g / replicas for g in clipped]
        return super()._clip_gradients(grads)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def step_schedule(lr, steps=(10, 20), decay=0.1):
    """``epoch -> learning rate``: ``lr`` multiplied by ``decay`` at each epoch in ``steps``."""
    steps = tuple(sorted(int(s) for s in steps))

    def schedule(epoch, current=None):
        return float(lr * decay ** sum(epoch >= s for s in steps))

    return schedule


def scaled_lr(config, num_replicas):
    """The linear scaling rule: lr grows with the global batch.

    ``config.lr`` is the rate for a global batch of ``config.lr_batch_size`` clips
    (default ``config.batch_size``, i.e. one replica). The global batch is
    ``config.batch_size * num_replicas``; the rate used is
    ``lr * global_batch / lr_batch_size``.
    """
    reference = config.lr_batch_size or config.batch_size
    return config.lr * config.batch_size * num_replicas / reference


def build_optimizer(config, num_replicas=1):
    """SGDL2 with the config's momentum, decay and clipping; lr set per epoch by a callback."""
    kwargs = {}
    if config.clipnorm:
        kwargs["global_clipnorm"] = float(config.clipnorm)
    return SGDL2(learning_rate=scaled_lr(config, num_replicas), momentum=config.momentum,
                 l2=config.weight_decay, **kwargs)
