"""`keras-tin data-service`: run a tf.data service dispatcher or worker that decodes
keras_tin pipelines (`load_dataset(..., service=...)`, `keras-tin train --data-service`).

    keras-tin data-service dispatcher --port 5050
    keras-tin data-service worker --dispatcher HOST:5050 --port 5051 --host THIS_HOST

Both run until stopped (Ctrl-C, SIGTERM). Workers need the videos at the same paths as
the client (a shared file system). See keras_tin/data/service.py for the sharding mode
and what a killed worker means.
"""

import signal
import time


def add_arguments(parser):
    parser.add_argument("role", choices=("dispatcher", "worker"))
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--dispatcher", help="worker: the dispatcher's HOST:PORT")
    parser.add_argument("--host", default="localhost",
                        help="worker: the name clients reach this worker by (default localhost)")
    parser.add_argument("--worker-timeout-ms", type=int, default=3000,
                        help="dispatcher: a worker silent this long is dropped (default 3000)")


def run(args):
    from keras_tin.data import service

    if args.role == "dispatcher":
        server = service.start_dispatcher(args.port, args.worker_timeout_ms)
        print(f"keras-tin data-service: dispatcher at {server.target}", flush=True)
    else:
        if not args.dispatcher:
            raise ValueError("a worker needs --dispatcher HOST:PORT")
        server = service.start_worker(args.dispatcher, args.port, args.host)
        print(f"keras-tin data-service: worker at {getattr(server, '_address', args.port)} "
              f"for {args.dispatcher}",
              flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    try:
        while not stop:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0
