"""Shared by the scale-out tests: tiny folder datasets, free ports, bounded subprocesses."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import data_videos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder_dataset(root, per_class=4, classes=("a", "b"), frames=12, split="train"):
    """``root/split/<class>/<class>_<i>.mp4``: tiny videos (48 x 32 px)."""
    paths = []
    for c in classes:
        for i in range(per_class):
            path = os.path.join(str(root), split, c, f"{c}_{i}")
            paths.append(data_videos.write_video(path, frames + i, width=48, height=32))
    return sorted(paths)


def free_ports(n):
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def env(**extra):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
             CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", TF_NUM_INTEROP_THREADS="1",
             TF_NUM_INTRAOP_THREADS="1")
    e.pop("TF_CONFIG", None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def start(args, log_path, **extra):
    """A subprocess in its own process group, output into ``log_path``."""
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                            env=env(**extra), cwd=ROOT, start_new_session=True)
    proc.log_path = log_path
    log.close()
    return proc


def stop(*procs):
    """Kills (SIGKILL, whole process group) every process still running, and reaps it."""
    for p in procs:
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def wait_all(procs, timeout):
    """Waits for every process (at most ``timeout`` s in all); returns the exit codes
    (None for one still running, which the caller must stop)."""
    end = time.monotonic() + timeout
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, end - time.monotonic()))
    return [p.poll() for p in procs]


def tail(proc, n=3000):
    with open(proc.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()[-n:]
