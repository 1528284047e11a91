"""The `keras-tin` command line. Each subcommand lives in keras_tin/commands/<name>.py
with `add_arguments(parser)` and `run(args) -> int`; imports stay lazy so
`keras-tin --help` is fast."""

import argparse
import importlib
import os
import sys

# What a user can cause and fix: one line, not a traceback (KERAS_TIN_DEBUG=1 shows it).
USER_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, ConnectionError)

COMMANDS = {
    "demo": "Train TIN, TSM and TSN on synthetic motion clips and compare them.",
    "info": "Versions, backend and whether the custom op is active.",
    "train": "Train a model on a dataset (flags or a YAML/JSON config).",
    "evaluate": "Evaluate a model (1 clip x centre crop, or N clips x 3 crops).",
    "predict": "Top-k labels for video files.",
    "convert": "Convert a PyTorch TIN/TSM/TSN checkpoint to .weights.h5.",
    "export": "Export a model to SavedModel or TFLite.",
    "stream": "Online recognition frame by frame (online TSM) on a video or camera.",
    "data-service": "Run a tf.data service dispatcher or worker that decodes videos.",
}


def _module(name):
    return importlib.import_module(f"keras_tin.commands.{name.replace('-', '_')}")


def build_parser(argv):
    parser = argparse.ArgumentParser(prog="keras-tin", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen command's module is imported
            _module(name).add_arguments(p)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _module(args.command).run(args) or 0
    except USER_ERRORS as error:
        if os.environ.get("KERAS_TIN_DEBUG") == "1":
            raise
        print(f"keras-tin {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
