"""`keras-tin info`: versions, the Keras backend and whether the custom op is active."""

import platform
import sys


def add_arguments(parser):
    parser.add_argument("--no-build", action="store_true",
                        help="report a missing op instead of building it now")


def _version(module_name):
    try:
        module = __import__(module_name)
    except Exception as err:  # an optional dependency: report, never fail
        return f"not available ({type(err).__name__})"
    return getattr(module, "__version__", "unknown")


def run(args):
    import keras

    import keras_tin
    from keras_tin.ops import dispatch

    backend = keras.backend.backend()
    lines = [
        f"keras_tin   {keras_tin.__version__}",
        f"python      {sys.version.split()[0]} ({platform.machine()})",
        f"keras       {keras.__version__}",
        f"backend     {backend}",
        f"tensorflow  {_version('tensorflow')}",
        f"jax         {_version('jax')}",
        f"torch       {_version('torch')}",
    ]
    available, reason = dispatch.custom_op_status(build_if_missing=not args.no_build)
    if available:
        lines.append(f"custom op   ACTIVE: TemporalInterlace(implementation='auto') uses it "
                     f"outside XLA; {reason}")
    else:
        lines.append(f"custom op   not active: {reason}; the portable keras.ops path is used")
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        lines.append(f"TF devices  CPU{', %d GPU' % len(gpus) if gpus else ''}; "
                     f"TF built with CUDA: {tf.test.is_built_with_cuda()}")
    print("\n".join(lines))
    return 0
