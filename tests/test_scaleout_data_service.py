"""Decoding on a tf.data service on 127.0.0.1: a dispatcher (`keras-tin data-service`)
and two workers in subprocesses give the same clips and skip report as local decoding;
a worker killed mid-epoch loses at most the videos it held, each counted in the ledger,
and the epoch finishes on the other worker (TensorFlow's DYNAMIC sharding: at most once).

Every process runs with a timeout and is killed (its whole process group) at the end.
"""

import json
import os
import signal
import time

import scaleout_helpers as h

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "scaleout_service.py")


def _result(proc):
    lines = [l for l in h.tail(proc, 200000).splitlines() if l.startswith("RESULT")]
    assert lines, h.tail(proc)
    return json.loads(lines[-1][len("RESULT"):])


def _cluster(tmp_path, delay):
    port = h.free_ports(1)[0]
    dispatcher = h.start(["-m", "keras_tin.cli", "data-service", "dispatcher", "--port",
                          str(port), "--worker-timeout-ms", "1000"],
                         str(tmp_path / "dispatcher.log"))
    workers = [h.start([SCRIPT, "worker", f"localhost:{port}", str(delay)],
                       str(tmp_path / f"worker{i}.log"),
                       KERAS_TIN_READ_TRACE=str(tmp_path / "reads.txt")) for i in range(2)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all("WORKER READY" in h.tail(w) for w in workers) and \
                "dispatcher at" in h.tail(dispatcher):
            break
        assert all(p.poll() is None for p in [dispatcher, *workers]), \
            [h.tail(p) for p in [dispatcher, *workers]]
        time.sleep(0.1)
    else:
        raise AssertionError([h.tail(p) for p in [dispatcher, *workers]])
    return dispatcher, workers, f"grpc://localhost:{port}"


def test_service_gives_the_local_clips_and_skip_report(tmp_path):
    videos = h.make_folder_dataset(tmp_path / "data", per_class=3, split="val")
    bad = tmp_path / "data" / "val" / "b" / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    dispatcher, workers, address = _cluster(tmp_path, 0.0)
    procs = [dispatcher, *workers]
    try:
        local = h.start([SCRIPT, "client", str(tmp_path / "data"), "val", "local"],
                        str(tmp_path / "local.log"))
        remote = h.start([SCRIPT, "client", str(tmp_path / "data"), "val", address],
                         str(tmp_path / "remote.log"))
        procs += [local, remote]
        assert h.wait_all([local, remote], 120) == [0, 0], [h.tail(p) for p in procs]
    finally:
        h.stop(*procs)
    here, there = _result(local), _result(remote)
    assert len(here["clips"]) == len(videos) == 6
    assert sorted(map(tuple, there["clips"])) == sorted(map(tuple, here["clips"]))
    # the bad file is skipped and counted the same way, on the worker that opened it
    assert here["counts"] == there["counts"] == {"unreadable": 1}, (here, there)
    assert [s["path"] for s in there["skipped"]] == [str(bad)]
    assert there["skipped"][0]["stage"].endswith("(data service)")
    assert there["missing"] == [] and there["duplicates"] == 0
    # the videos were opened by the workers, not by the client
    readers = {line.split(" ", 1)[0] for line in open(tmp_path / "reads.txt")}
    assert readers <= {str(w.pid) for w in workers} and readers, readers


def test_killed_service_worker_stalls_the_epoch_after_the_others_videos(tmp_path):
    """The stated limitation: under DYNAMIC sharding a worker killed mid-epoch loses the
    video it held (at most once), the other worker decodes every other video, and then
    the client waits for the lost one: the epoch does not end (TensorFlow 2.21 waited
    > 90 s here). The job must then be stopped (or the worker restarted)."""
    h.make_folder_dataset(tmp_path / "data", per_class=4, split="val")  # 8 videos
    dispatcher, workers, address = _cluster(tmp_path, 0.3)
    procs = [dispatcher, *workers]
    try:
        client = h.start([SCRIPT, "client", str(tmp_path / "data"), "val", address],
                         str(tmp_path / "client.log"))
        procs.append(client)
        deadline = time.monotonic() + 60
        while "CLIP 2\n" not in h.tail(client, 100000) and time.monotonic() < deadline:
            assert client.poll() is None, h.tail(client)
            time.sleep(0.05)
        os.kill(workers[1].pid, signal.SIGKILL)  # mid-epoch: 2 of 8 clips arrived
        time.sleep(10)
        log = h.tail(client, 100000)
        received = max(int(l.split()[1]) for l in log.splitlines() if l.startswith("CLIP "))
        stalled = client.poll() is None
    finally:
        h.stop(*procs)
    print(f"killed service worker: {received} of 8 clips received in 10 s, then "
          f"{'stalled' if stalled else 'ended'}")
    assert stalled and "RESULT" not in log
    # the other worker went on past the 2 clips of the kill, the killed one's are lost
    assert 3 <= received < 8
    reads = [line.split(" ", 1) for line in open(tmp_path / "reads.txt")]
    survivor = [path for pid, path in reads if pid == str(workers[0].pid)]
    assert len(survivor) == len(set(survivor))  # no video decoded twice by the survivor


def test_train_with_data_service_records_the_skip(tmp_path):
    """`TrainConfig(data_service=...)` (`keras-tin train --data-service`): the epoch is
    decoded on the service (here a dispatcher and a worker in this process) and a bad
    training video shows in the run's skip report."""
    from keras_tin.data import service
    from keras_tin.training import TrainConfig
    from keras_tin.training import train

    h.make_folder_dataset(tmp_path / "data", per_class=2)
    bad = tmp_path / "data" / "train" / "a" / "broken.mp4"
    bad.write_bytes(b"not a video" * 20)
    dispatcher = service.start_dispatcher(0)
    worker = service.start_worker(dispatcher.target)
    try:
        result = train(TrainConfig(
            dataset="folder", root=str(tmp_path / "data"), val_split="", arch="tsn_resnet18",
            base_filters=4, frames=2, image_size=16, batch_size=2, epochs=1, dropout=0.0,
            implementation="portable", output_dir=str(tmp_path / "run"), verbose=0,
            report=str(tmp_path / "report.json"), data_service=dispatcher.target))
    finally:
        worker.stop()
        dispatcher.stop()
    assert result.epochs_done == 1
    assert "skipped 1 samples (1 unreadable)" in result.data_summary, result.data_summary
    report = json.loads((tmp_path / "report.json").read_text())
    assert str(bad) in json.dumps(report)
