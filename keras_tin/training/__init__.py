"""Training and evaluation: the paper's recipe behind `keras-tin train/evaluate/predict`
and the scripts in examples/.

    config = TrainConfig(dataset="ucf101", root="/data/ucf101", weights="...", epochs=25)
    result = train(config)          # model.fit with checkpoints, resume, logs
    metrics = evaluate_model(result.model, "ucf101", "/data/ucf101", "test",
                             num_clips=10, num_crops=3)
"""

import importlib

# Imported on first use, so that `import keras_tin` can register SGDL2 (for loading a
# trained .keras file) without importing the trainer, the data pipeline and the examples.
_EXPORTS = {
    "TrainConfig": "config",
    "add_config_arguments": "config",
    "config_from_args": "config",
    "make_distribution": "distribute",
    "evaluate_model": "evaluation",
    "run_example": "examples",
    "SGDL2": "optimizers",
    "build_optimizer": "optimizers",
    "scaled_lr": "optimizers",
    "step_schedule": "optimizers",
    "predict_files": "prediction",
    "build_datasets": "trainer",
    "build_model": "trainer",
    "train": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"keras_tin.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'keras_tin.training' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
