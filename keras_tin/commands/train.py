"""`keras-tin train`: the paper's recipe on a benchmark or a folder of videos.

Rerunning the same command resumes an interrupted run in --output-dir (killed at any
point, it redoes what is missing) and trains nothing for a finished one. Bad settings and
failures you must act on (a wrong --root, no videos, unknown --weights, a diverging loss,
every video skipped) print one line starting "keras-tin train: error:" and exit with
status 1 (KERAS_TIN_DEBUG=1 shows the traceback instead). Status 0: trained, or nothing
was left to train.
"""

import os
import sys


def add_arguments(parser):
    from keras_tin.training.config import add_config_arguments

    parser.description = __doc__.split("\n\n", 1)[1].replace("\n", " ")
    add_config_arguments(parser)


def _fail(error):
    if os.environ.get("KERAS_TIN_DEBUG") == "1":
        raise error
    message = str(error).strip() or type(error).__name__
    print(f"keras-tin train: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def run(args):
    from keras_tin.data import DataError
    from keras_tin.training import checks
    from keras_tin.training.config import config_from_args
    from keras_tin.training.trainer import fit_run
    from keras_tin.training.trainer import prepare_run

    try:
        config = config_from_args(args)
        prepared = prepare_run(config)
    # the run cannot start: settings, paths, no videos, weights, another run in --output-dir
    except (ValueError, OSError, ImportError) as e:  # DataError is a ValueError
        return _fail(e)
    try:  # the run stopped: NaN loss, an epoch without a batch, a bad video under "raise"
        result = fit_run(prepared)
    except (checks.TrainingError, DataError) as e:
        return _fail(e)
    if result.initial_epoch >= result.epochs_done:
        print(f"No epoch left to train: {result.output_dir} holds {result.epochs_done} "
              f"finished epochs and their outputs.")
    else:
        print(f"Trained epochs {result.initial_epoch + 1}-{result.epochs_done} of "
              f"{config.epochs}; outputs in {result.output_dir} (model.keras, best.keras, "
              f"log.csv, history.json, checkpoints/)")
    return 0
