"""What ``engine train`` prints (a header, validation-only epochs, a summary
of the kept weights) and the writer's lock: a run folder written by a live
process reads "in progress", never "interrupted", and ``--resume`` refuses it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from layerscope.engine.errors import UserError
from layerscope.engine.run_lock import (LOCK_FILE, MAX_LOCK_BYTES, hold_lock, live_writer, lock_stamp, process_start,
                                        read_lock)
from layerscope.engine.runs import read_run, scan_runs
from layerscope.engine.train_report import still_improving
from tests.conftest import ROOT, run_engine

DEMO = ["--dataset", "demo", "--hidden", "16", "--quiet"]


def test_train_prints_a_header_validation_only_epochs_and_a_summary_of_the_kept_weights(tmp_path):
    result = run_engine("train", *DEMO, "--epochs", "4", "--no-embed", "--out", tmp_path, "--name", "r")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    sizes, training, metrics = run["dataset"]["split_sizes"], run["training"], run["metrics"]

    # The header, before any epoch: graph, split sizes, classes, model and objective, device, full-batch.
    assert lines[0] == (f"demo: 5,000 nodes, {run['dataset']['num_edges']:,} edges, split {sizes['train']:,} / "
                        f"{sizes['val']:,} / {sizes['test']:,} (train / val / test), 10 classes | sage supervised, "
                        f"3 layers x 16 | {run['device']} | full-batch")
    assert sizes["train"] + sizes["val"] + sizes["test"] == 5000
    # One line per epoch with the loss and validation metrics, and no test metric (nor in history.csv).
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [int(re.match(r"epoch (\d+)/4", line)[1]) for line in epochs] == [1, 2, 3, 4]
    assert all("val_acc" in line and "loss" in line and "test" not in line for line in epochs), epochs
    assert not [c for c in pd.read_csv(tmp_path / "r" / "history.csv").columns if c.startswith("test")]
    # The summary: the kept epoch, the test accuracy of its weights, the time taken.
    best = training["best_epoch"]
    summary = next(line for line in lines if line.startswith("kept epoch"))
    assert summary.startswith(f"kept epoch {best} of 4 (best validation: ")
    assert f"test on the kept weights: test_acc {metrics['test_acc']:.4f}" in summary
    seconds = float(re.search(r"4 epochs in ([0-9.]+) s$", summary)[1])
    final = re.fullmatch(rf"{re.escape(str(tmp_path / 'r'))}: done in ([0-9.]+) s; kept epoch {best} of 4; "
                         rf"test_acc {metrics['test_acc']:.4f}, .*", lines[-1])
    assert final and 0 < seconds <= float(final[1]) < 120, lines[-1]
    # --epochs 4 cut the run short when its best epoch is one of the last 2 (the rule: the last tenth, at least 2).
    warned = [line for line in lines if line.startswith("warning: --epochs 4 ended training")]
    assert len(warned) == (best >= 3) and not training["stopped_early"]
    assert not (tmp_path / "r" / LOCK_FILE).exists()


def test_the_still_improving_rule():
    assert still_improving(200, 181, 200, stopped_early=False)          # in the last tenth
    assert not still_improving(200, 180, 200, stopped_early=False)
    assert still_improving(5, 4, 5, stopped_early=False)                # the last 2 of a short run
    assert not still_improving(5, 3, 5, stopped_early=False)
    assert not still_improving(120, 119, 200, stopped_early=True)       # early stopping ended it


def _cli(capsys, *args) -> tuple[int, str]:
    """``layerscope ARGS`` run in this process (its imports done once): exit status and stderr."""
    from layerscope.engine.cli import main

    status = main([str(a) for a in args])
    return status, capsys.readouterr().err


def test_a_live_training_run_is_in_progress_and_resume_refuses_it_until_it_is_killed(tmp_path, capsys):
    args = [sys.executable, "-m", "engine", "train", *DEMO, "--epochs", "2000", "--patience", "2000",
            "--out", str(tmp_path), "--name", "r"]
    # Niced, so that the commands checked against it are not slowed by it on a small machine.
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: os.nice(10))
    try:
        deadline = time.monotonic() + 120
        while not ((tmp_path / "r" / "last.pt").exists() and (tmp_path / "r" / LOCK_FILE).exists()):
            assert proc.poll() is None and time.monotonic() < deadline, "training never saved an epoch"
            time.sleep(0.1)
        writer = read_lock(tmp_path / "r")
        assert (writer.pid, writer.host, writer.command) == (proc.pid, socket.gethostname(), "train")
        expected = f"in progress (pid {proc.pid} on host {socket.gethostname()} since {writer.started}"

        status, err = _cli(capsys, "list", "--out", tmp_path)
        assert status == 0 and expected in err, err
        assert "interrupted" not in err and "--resume" not in err
        for command, refusal in ((["--resume"], "--resume would start a second writer"),
                                 ([], "pick another --name")):
            status, err = _cli(capsys, "train", *command, "--name", "r", "--out", tmp_path)
            assert status == 2 and err.count("\n") == 1 and expected in err and refusal in err, err
        assert proc.poll() is None          # the refusals left the live run alone
        stamp = lock_stamp(tmp_path / "r")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Its writer is gone: the lock it left says nothing, the run reads as interrupted.
    assert (tmp_path / "r" / LOCK_FILE).exists() and live_writer(tmp_path / "r") is None
    assert lock_stamp(tmp_path / "r") != stamp          # the dashboard's cached runs list is read again
    status, err = _cli(capsys, "list", "--out", tmp_path)
    assert "training was interrupted" in err and "in progress" not in err


def _lock(folder, **fields) -> None:
    folder.mkdir(exist_ok=True)
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-02T03:04:05+0000",
            "command": "train", "process_start": process_start(os.getpid()), **fields}
    (folder / LOCK_FILE).write_text(json.dumps(lock))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_lock_from_a_dead_pid_reads_as_interrupted(tmp_path):
    run = tmp_path / "r"
    _lock(run, pid=_dead_pid(), process_start=None)
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(UserError, match="training was interrupted"):
        read_run(run)
    # The same pid alive but started at another time is another process: the writer is gone.
    _lock(run, process_start=(process_start(os.getpid()) or 0) + 1)
    assert live_writer(run) is None
    _lock(run)          # this very process: live
    assert "in progress (pid" in scan_runs(tmp_path)[1][0]


def test_a_lock_from_another_host_is_in_progress_and_says_how_to_override_it(tmp_path):
    run = tmp_path / "r"
    _lock(run, host="build-07.example", pid=4242)
    (run / "last.pt").write_bytes(b"")
    with pytest.raises(UserError) as e:
        read_run(run)
    message = str(e.value)
    assert "in progress (pid 4242 on host build-07.example" in message
    assert f"if it no longer runs, delete {run / LOCK_FILE}" in message and "\n" not in message
    with pytest.raises(UserError, match="in progress"), hold_lock(run, "embed"):
        pass
    assert read_lock(run).host == "build-07.example"        # a refused writer leaves the lock as it was


@pytest.mark.parametrize("content", [
    b"x" * (MAX_LOCK_BYTES + 1), b"not json", b"[1, 2]", b"\xff\xfe",
    json.dumps({"pid": True, "host": "h", "started": "2026-01-02T03:04:05+0000", "command": "train"}).encode(),
    json.dumps({"pid": 7, "host": "h\n# **owned**", "started": "2026-01-02T03:04:05+0000",
                "command": "train"}).encode(),
    json.dumps({"pid": 7, "host": "h", "started": "now", "command": "train"}).encode(),
    json.dumps({"pid": 7, "host": "h", "started": "2026-01-02T03:04:05+0000", "command": "rm -rf"}).encode(),
])
def test_an_unreadable_lock_is_no_writer_and_is_taken_over(tmp_path, content):
    (tmp_path / LOCK_FILE).write_bytes(content)
    assert read_lock(tmp_path) is None and live_writer(tmp_path) is None
    with hold_lock(tmp_path, "embed"):
        assert read_lock(tmp_path).pid == os.getpid()
        with hold_lock(tmp_path, "embed"):          # train embedding its own run: the same lock
            pass
        assert read_lock(tmp_path).pid == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists() and os.listdir(tmp_path) == []


def test_layer_scoring_says_what_it_does_with_correct_totals(tmp_path, capsys):
    from layerscope.engine.record import RunRecord, RunWriter
    from layerscope.engine.progress import score_text

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 100)
    split = {"train": np.arange(0, 300, 2), "val": np.arange(1, 300, 4), "test": np.arange(3, 300, 4)}
    writer = RunWriter(tmp_path, labels, split, ["a", "b", "c"], metrics="fast", layers=2)
    for name in ("input", "hidden1"):
        writer.add_layer(name, rng.normal(size=(300, 8)).astype(np.float32) + labels[:, None])
    writer.finish(RunRecord(name="r", dataset={}, model={}), np.eye(3)[labels], "model")
    out, err = capsys.readouterr()
    scored = [line for line in out.splitlines() if line.startswith("scored ")]
    assert [line.split()[1] for line in scored] == ["input", "hidden1"]
    assert re.search(r"knn_acc 0\.\d{4} \[0\.\d{4}, [01]\.\d{4}\], silhouette -?0\.\d{4} on 75 nodes$", scored[0])
    assert "CKA of 2 layers on 75 nodes in" in out
    for step in ("writing input (1/2)", "scoring input (1/2)", "computing layer 2/2", "scoring hidden1 (2/2)",
                 "CKA of 2 layers", "2/2"):
        assert step in err, step
    assert score_text({"knn_acc": 0.5, "knn_acc_ci": [0.25, 0.75], "scored_nodes": 1000, "silhouette": None}) == \
        "knn_acc 0.5000 [0.2500, 0.7500] on 1,000 nodes"


def test_a_stale_lock_with_this_pid_but_another_process_start_is_taken_over(tmp_path):
    _lock(tmp_path, process_start=(process_start(os.getpid()) or 0) + 1)     # pid reused after a restart
    with hold_lock(tmp_path, "train"):
        assert read_lock(tmp_path).process_start == process_start(os.getpid())
        assert live_writer(tmp_path) is not None
    assert not (tmp_path / LOCK_FILE).exists()
