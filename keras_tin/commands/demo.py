"""`keras-tin demo`: TIN vs TSM vs TSN (and any other temporal module of the zoo:
tada2d, tea, stm, ...) on synthetic motion clips."""


def add_arguments(parser):
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--depth", type=int, default=18, choices=(18, 34, 50, 101),
                        help="ResNet depth (default 18)")
    parser.add_argument("--size", type=int, default=32, help="frame size in pixels (default 32)")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (default 4)")
    parser.add_argument("--width", type=int, default=16,
                        help="base width of the ResNet (default 16; 64 is the standard ResNet)")
    parser.add_argument("--num-train", type=int, default=1200, help="training clips")
    parser.add_argument("--num-val", type=int, default=400, help="validation clips")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", default=["tin,tsm,tsn"], nargs="+",
                        help="temporal modules, comma- or space-separated (default tin,tsm,"
                             "tsn; also tada2d, tea, stm, msnet: a module defined only for "
                             "deeper networks, e.g. TEA on Res2Net-50, is built at its "
                             "smallest depth)")
    parser.add_argument("--output-dir", default="demo_output",
                        help="where results.md/json and the TIN plot go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--online", action="store_true",
                        help="train an online TSM MobileNetV2 (and a TSN one) and report the "
                             "running prediction's accuracy frame by frame through the step "
                             "model (keras_tin.streaming); --models and --depth are unused")


def run(args):
    if args.online:
        from keras_tin.streaming.demo import run_online_demo
        run_online_demo(frames=args.frames, size=args.size, epochs=args.epochs,
                        num_train=args.num_train, num_val=args.num_val,
                        batch_size=args.batch_size, output_dir=args.output_dir, seed=args.seed)
        return 0
    from keras_tin.applications import temporal_modules

    given = args.models if isinstance(args.models, (list, tuple)) else [args.models]
    models = tuple(m.strip() for item in given for m in item.split(",") if m.strip())
    known = temporal_modules.names()
    bad = [m for m in models if m not in known]
    if bad or not models:
        raise SystemExit(f"--models must list temporal modules among {', '.join(known)}. "
                         f"Received: {' '.join(given)!r} (unknown: {', '.join(bad) or 'none'})")
    from keras_tin.demo import run_demo
    run_demo(frames=args.frames, depth=args.depth, size=args.size, epochs=args.epochs,
             num_train=args.num_train, num_val=args.num_val, batch_size=args.batch_size,
             models=models, output_dir=args.output_dir, seed=args.seed,
             width=args.width)
    return 0
