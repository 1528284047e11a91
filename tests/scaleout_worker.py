"""One training process for the scale-out tests: ``python tests/scaleout_worker.py
CONFIG_JSON`` (TF_CONFIG in the environment for a multi-worker run).

Every BatchNorm is frozen (each replica would otherwise normalise its own slice of the
global batch, which one process with the whole batch cannot reproduce)."""

import json
import os
import sys


def main():
    import keras

    keras.config.disable_traceback_filtering()

    from keras_tin.applications import freeze_batchnorm
    from keras_tin.training import TrainConfig
    from keras_tin.training import trainer

    config = TrainConfig(**json.loads(sys.argv[1]))

    def build(config, num_classes, num_replicas=1):
        model = trainer.build_model(config, num_classes, compile=False)
        freeze_batchnorm(model, keep_first=False)
        return trainer.compile_model(model, config, num_classes, num_replicas)

    class EpochMarks(keras.callbacks.Callback):
        """Marks each epoch's start in the read trace (Keras reads one batch before the
        first epoch to learn the input shapes: that pass is not an epoch)."""

        def on_epoch_begin(self, epoch, logs=None):
            if os.environ.get("KERAS_TIN_READ_TRACE"):
                with open(os.environ["KERAS_TIN_READ_TRACE"], "a", encoding="utf-8") as f:
                    f.write(f"{os.getpid()} EPOCH {epoch}\n")

    result = trainer.train(config, callbacks=[EpochMarks()], build=build)
    print("EPOCHS_DONE", result.epochs_done, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
