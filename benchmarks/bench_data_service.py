"""Clips/s of one training epoch decoded in-process vs on a tf.data service with 1 and 2
local workers (`keras-tin data-service`), ratios printed in one run.

    .venv/bin/python benchmarks/bench_data_service.py [--videos 96] [--frames 8] [--size 112]

The workers run on this machine, so they share its cores with the client: this measures
the service's overhead and the scaling the cores allow, not a cluster.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_videos(root, count, frames=48, width=160, height=120):
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = os.path.join(root, "train", f"c{i % 4}")
        os.makedirs(folder, exist_ok=True)
        out = cv2.VideoWriter(os.path.join(folder, f"v{i}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                              25, (width, height))
        for _ in range(frames):
            out.write(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        out.release()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def epoch_rate(root, args, service=None):
    from keras_tin.data import load_dataset

    ds = load_dataset("folder", root, "train", frames=args.frames, image_size=args.size,
                      batch_size=4, service=service, seed=0)
    start, clips = None, 0
    for x, _ in ds:  # the clock starts at the first batch: job start-up not counted
        if start is None:
            start = time.perf_counter()
            continue
        clips += int(x.shape[0])
    return clips / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    with tempfile.TemporaryDirectory() as root:
        make_videos(root, args.videos)
        rates = {"in-process": epoch_rate(root, args)}
        port = free_port()
        cli = [sys.executable, "-m", "keras_tin.cli", "data-service"]
        procs = [subprocess.Popen(cli + ["dispatcher", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        try:
            for n in (1, 2):
                procs.append(subprocess.Popen(cli + ["worker", "--dispatcher",
                                                     f"localhost:{port}"], env=env,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
                time.sleep(8)  # the worker starts and registers
                rates[f"service, {n} worker(s)"] = epoch_rate(root, args,
                                                              f"grpc://localhost:{port}")
        finally:
            for p in procs:
                p.kill()
                p.wait()
    base = rates["in-process"]
    print(f"{args.videos} videos, {args.frames} frames, {args.size} px, {os.cpu_count()} CPUs")
    for name, rate in rates.items():
        print(f"{name:22s} {rate:8.1f} clips/s   x{rate / base:.2f} vs in-process")


if __name__ == "__main__":
    main()
