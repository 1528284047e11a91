"""Multi-worker training (`strategy="multi_worker"`, TF_CONFIG) with 2 worker processes on
127.0.0.1: the same weights as one process with the same global batch and order, each
video read by one worker per epoch, the chief alone writing the run folder, and a worker
killed with SIGKILL mid-run: the other stops with a clear error, a relaunch resumes.

Every process runs with a timeout and is killed (its whole process group) at the end.
"""

import json
import os
import signal
import time

import numpy as np

import scaleout_helpers as h

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaleout_worker.py")
TIMEOUT = 150  # s, for one launch of the workers


def _config(tmp_path, **changes):
    config = dict(dataset="folder", root=str(tmp_path / "data"), val_split="",
                  arch="tsn_resnet18", base_filters=4, frames=2, image_size=16, batch_size=2,
                  epochs=1, lr=0.1, lr_batch_size=4, lr_steps=[], dropout=0.0,
                  partial_bn=False, deterministic=True, strategy="multi_worker",
                  implementation="portable", output_dir=str(tmp_path / "run"), verbose=0, seed=3)
    config.update(changes)
    return config


def _launch(tmp_path, config, tag, trace=None, workers=2):
    ports = h.free_ports(workers)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    extra = {"KERAS_TIN_READ_TRACE": trace} if trace else {}
    return [h.start([WORKER, json.dumps(config)], str(tmp_path / f"{tag}_w{i}.log"),
                    TF_CONFIG=json.dumps({"cluster": cluster,
                                          "task": {"type": "worker", "index": i}}), **extra)
            for i in range(workers)]


def _weights(path):
    import keras

    import keras_tin.applications  # noqa: F401  (registers the layers)

    return [np.array(w) for w in keras.saving.load_model(path, compile=False).weights]


def test_two_workers_equal_one_process_and_read_disjoint_videos(tmp_path):
    videos = h.make_folder_dataset(tmp_path / "data", per_class=4)  # 8 videos: 2 steps
    trace = str(tmp_path / "reads.txt")
    procs = _launch(tmp_path, _config(tmp_path), "mw", trace)
    # the reference: one process, one replica, the whole global batch; "mirrored" (on the
    # one CPU) so that Keras' shape-probing pass draws the first order here too
    single = h.start([WORKER, json.dumps(_config(tmp_path, strategy="mirrored", batch_size=4,
                                                 output_dir=str(tmp_path / "single")))],
                     str(tmp_path / "single.log"))
    try:
        codes = h.wait_all(procs + [single], TIMEOUT)
        assert codes == [0, 0, 0], [h.tail(p) for p in procs + [single]]
    finally:
        h.stop(*procs, single)
    # the chief alone wrote the run folder; the other worker wrote nothing anywhere
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "history.json",
                                       "labels.txt", "log.csv", "model.keras", "state.json"]
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 1
    # each video read by exactly one worker in the epoch (reads before a worker's EPOCH
    # mark are Keras' shape-probing pass, not counted)
    in_epoch = {}
    for line in open(trace, encoding="utf-8"):
        pid, path = line.rstrip("\n").split(" ", 1)
        if path == "EPOCH 0":
            in_epoch[pid] = []
        elif pid in in_epoch:
            in_epoch[pid].append(path)
    assert set(in_epoch) == {str(p.pid) for p in procs}, in_epoch
    first, second = in_epoch.values()
    assert len(first) == len(set(first)) == 4 and len(second) == len(set(second)) == 4
    assert not set(first) & set(second) and set(first) | set(second) == set(videos)
    # same weights as one process with the whole global batch of 4, in the same order
    multi, one = _weights(str(run / "model.keras")), _weights(str(tmp_path / "single" /
                                                                   "model.keras"))
    start = _weights_at_start(tmp_path)
    moved = max(float(np.abs(a - s).max()) for a, s in zip(one, start))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(multi, one))
    print(f"moved {moved:.3g}, multi-worker vs one process {diff:.3g}")
    assert moved > 1e-3
    assert diff < 1e-4 * max(1.0, moved) + 1e-5  # float32 all-reduce order: ~1e-7 seen


def _weights_at_start(tmp_path):
    import keras

    from keras_tin.applications import freeze_batchnorm
    from keras_tin.training import TrainConfig
    from keras_tin.training import trainer

    config = TrainConfig(**_config(tmp_path, strategy="default"))
    keras.utils.set_random_seed(config.seed)
    model = trainer.build_model(config, 2, compile=False)
    freeze_batchnorm(model, keep_first=False)
    return [np.array(w) for w in model.weights]


def test_killed_worker_stops_the_job_and_a_relaunch_resumes(tmp_path):
    h.make_folder_dataset(tmp_path / "data", per_class=4)  # 8 videos: 2 steps per epoch
    config = _config(tmp_path, epochs=4)
    state_path = tmp_path / "run" / "state.json"
    procs = _launch(tmp_path, config, "first")
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and not state_path.exists():
            assert all(p.poll() is None for p in procs), [h.tail(p) for p in procs]
            time.sleep(0.05)
        assert state_path.exists(), [h.tail(p) for p in procs]
        os.kill(procs[1].pid, signal.SIGKILL)  # worker 1, during epoch 2 or a later one
        killed = time.monotonic()
        codes = h.wait_all([procs[0]], 120)  # the stated bound on detection
        detection = time.monotonic() - killed
    finally:
        h.stop(*procs)
    log = h.tail(procs[0], 20000)
    assert codes == [1], log
    assert "another worker of the cluster stopped or cannot be reached" in log, log
    state = json.loads(state_path.read_text())
    done = state["epochs_done"]
    assert 1 <= done < 4 and not state.get("finished"), state
    # relaunch both: resume from the chief's backup after `done` epochs
    started = time.monotonic()
    procs = _launch(tmp_path, dict(config, verbose=1), "again")
    try:
        codes = h.wait_all(procs, TIMEOUT)
        resume = time.monotonic() - started
        assert codes == [0, 0], [h.tail(p) for p in procs]
    finally:
        h.stop(*procs)
    for p in procs:
        assert f"Resuming {tmp_path / 'run'} after epoch {done} of 4" in h.tail(p, 20000)
    state = json.loads(state_path.read_text())
    assert state["finished"] and state["epochs_done"] == 4
    rows = (tmp_path / "run" / "log.csv").read_text().strip().split("\n")
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(4))
    import keras

    import keras_tin.applications  # noqa: F401
    model = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    assert model.output_shape == (None, 2)
    print(f"detection {detection:.1f} s after SIGKILL; relaunch to finished "
          f"(epochs {done + 1}-4) {resume:.1f} s")
