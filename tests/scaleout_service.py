"""Processes for tests/test_scaleout_data_service.py.

``python tests/scaleout_service.py worker DISPATCHER DELAY``: a keras_tin data-service
worker whose every video read sleeps DELAY seconds first (so a test can kill it
mid-epoch). ``python tests/scaleout_service.py client ROOT SPLIT SERVICE|local``: reads
one epoch (test protocol, no shuffling) and prints one JSON line: per clip the video, its
label and a hash of its pixels, the skip report, and what the service ledger says.
"""

import hashlib
import json
import sys
import time


def worker(dispatcher, delay):
    from keras_tin.data import pipeline
    from keras_tin.data import service

    load = pipeline.ClipLoader.load

    def slow_load(self, index, seed=0):
        time.sleep(delay)
        return load(self, index, seed)

    pipeline.ClipLoader.load = slow_load
    server = service.start_worker(dispatcher)
    print("WORKER READY", flush=True)
    server.join()


def client(root, split, where):
    import numpy as np

    from keras_tin.data import load_dataset

    ds, info = load_dataset("folder", root, split, frames=2, image_size=16, batch_size=1,
                            training=False, shuffle=False, with_info=True,
                            service=None if where == "local" else where)
    clips = []
    for x, y in ds:
        x = np.asarray(x)[0]
        clips.append([int(np.asarray(y)[0]), hashlib.sha1(x.tobytes()).hexdigest()])
        print("CLIP", len(clips), flush=True)
    ledger = getattr(info, "service_ledger", None)
    print("RESULT" + json.dumps({
        "clips": clips, "skipped": info.errors.skipped(), "counts": info.errors.counts(),
        "videos": [s.path for s in info.samples],
        "missing": ledger.missing() if ledger else None,
        "duplicates": ledger.duplicates() if ledger else None}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], float(sys.argv[3]))
    else:
        client(*sys.argv[2:5])
