"""A kill at any point leaves the old complete run, or a run that one command
completes, and no ``.tmp`` file or hidden build folder survives that command.

Ten kill points, each a SIGKILL sent when the process is seen doing the
thing (a file open, a file written), not after a guessed delay.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layerscope.engine.runs import read_run, scan_runs
from tests.conftest import ROOT, run_engine

PHOTO = ["--dataset", "amazon-photo", "--hidden", "64", "--split", "60/20/20", "--metrics", "fast", "--quiet"]


def kill_when(args: list, ready: Callable[[int], bool], timeout: float = 180) -> None:
    """Start ``python -m engine ARGS`` and SIGKILL it as soon as ``ready(pid)``."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    try:
        while not ready(proc.pid):
            assert proc.poll() is None, f"{args[0]} ended (exit {proc.returncode}) before it could be killed"
            assert time.monotonic() < deadline, f"{args[0]} never reached the kill point"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def has_open(fragment: str) -> Callable[[int], bool]:
    """The process holds a file whose path contains ``fragment`` open."""
    def ready(pid: int) -> bool:
        try:
            return any(fragment in os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False
    return ready


def exists(pattern: str, root: Path) -> Callable[[int], bool]:
    return lambda pid: any(root.glob(pattern))


def leftovers(out: Path) -> list[str]:
    """Temporary files and hidden build folders anywhere under ``out``."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.name.endswith(".tmp") or p.name.endswith(".partial") or p.name.endswith(".old"))


def assert_complete(out: Path, name: str, layers: int) -> None:
    runs, warnings = scan_runs(out)
    assert [r.name for r in runs] == [name] and not warnings, warnings
    assert len(runs[0].layers) == layers
    assert leftovers(out) == [], leftovers(out)


def digest(run: Path) -> str:
    h = hashlib.blake2b()
    for file in sorted(run.rglob("*")):
        if file.is_file() and "projections" not in file.parts:
            h.update(file.name.encode() + file.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory) -> Path:
    """A complete Amazon Photo run to re-embed and project (copied per test)."""
    out = tmp_path_factory.mktemp("trained")
    assert run_engine("train", *PHOTO, "--epochs", "5", "--data-root", shared_data, "--out", out,
                      "--name", "r").returncode == 0
    return out / "r"


def test_train_killed_while_loading_its_data_runs_again(shared_data, tmp_path):
    out = tmp_path / "runs"
    args = ["train", *PHOTO, "--epochs", "3", "--data-root", shared_data, "--out", out, "--name", "r"]
    kill_when(args, has_open("amazon_electronics_photo.npz"))
    assert not (out / "r").exists()
    assert run_engine(*args).returncode == 0
    assert_complete(out, "r", 4)


def test_train_killed_before_its_first_epoch_was_saved_runs_again(shared_data, tmp_path):
    out = tmp_path / "runs"
    args = ["train", *PHOTO, "--epochs", "3", "--data-root", shared_data, "--out", out, "--name", "r"]
    kill_when(args, lambda pid: (out / "r").is_dir() and not (out / "r" / "last.pt").exists())
    result = run_engine(*args)              # the same command, not --resume: nothing was saved
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)


def test_train_killed_mid_training_resumes(shared_data, tmp_path):
    out = tmp_path / "runs"
    args = ["train", *PHOTO, "--epochs", "40", "--patience", "40", "--data-root", shared_data, "--out", out,
            "--name", "r"]
    history = out / "r" / "history.csv"
    kill_when(args, lambda pid: history.exists() and len(pd.read_csv(history)) >= 3)
    result = run_engine("train", "--resume", "--name", "r", "--out", out, "--data-root", shared_data, "--quiet")
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)
    assert pd.read_csv(history)["epoch"].tolist() == list(range(1, 41))


def test_train_killed_while_embedding_then_its_embed_killed_is_finished_by_embed(shared_data, tmp_path):
    out = tmp_path / "runs"
    args = ["train", *PHOTO, "--epochs", "3", "--data-root", shared_data, "--out", out, "--name", "r"]
    kill_when(args, exists("r/layers/hidden1.npy", out))
    assert "embeddings not written" in scan_runs(out)[1][0]
    embed = ["embed", "--run", out / "r", "--data-root", shared_data, "--metrics", "fast", "--quiet"]
    kill_when(embed, has_open("amazon_electronics_photo.npz"))       # and the embed continuing it, loading data
    result = run_engine(*embed)
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)


@pytest.mark.parametrize("point", ["layers/hidden1.npy", "layers/logits.npy"])
def test_a_killed_re_embed_leaves_the_old_run_whole(trained, shared_data, tmp_path, point):
    out = tmp_path / "runs"
    shutil.copytree(trained, out / "r")
    before = digest(out / "r")
    args = ["embed", "--run", out / "r", "--data-root", shared_data, "--dtype", "float16", "--quiet"]
    kill_when(args, exists(f".r.*.partial/{point}", out))
    assert [r.name for r in scan_runs(out)[0]] == ["r"]                     # the old run, still listed ...
    assert digest(out / "r") == before                                      # ... and unchanged
    result = run_engine(*args)
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)
    assert read_run(out / "r").layers[1]["dtype"] == "float16"


def test_embed_checkpoint_killed_midway_runs_again(trained, shared_data, tmp_path):
    out = tmp_path / "runs"
    args = ["embed", "--checkpoint", trained / "model.pt", "--data-root", shared_data, "--out", out, "--name", "c",
            "--metrics", "fast", "--quiet"]
    kill_when(args, exists(".c.*.partial/layers/hidden1.npy", out))
    assert scan_runs(out) == ([], [])                 # invisible
    result = run_engine(*args)
    assert result.returncode == 0, result.stderr
    assert_complete(out, "c", 4)


def test_import_killed_midway_runs_again(trained, tmp_path):
    out = tmp_path / "runs"
    layers = [trained / "layers" / f"{name}.npy" for name in ("input", "hidden1", "hidden2", "logits")]
    labels = tmp_path / "labels.npy"
    np.save(labels, pd.read_parquet(trained / "nodes.parquet")["label"].to_numpy())
    args = ["import", "--embeddings", *layers, "--labels", labels, "--out", out, "--name", "i", "--quiet"]
    kill_when(args, exists(".i.*.partial/layers/hidden1.npy", out))
    assert scan_runs(out) == ([], [])
    result = run_engine(*args)
    assert result.returncode == 0, result.stderr
    assert_complete(out, "i", 4)


def test_project_killed_midway_runs_again(trained, tmp_path):
    out = tmp_path / "runs"
    shutil.copytree(trained, out / "r")
    args = ["project", "--run", out / "r", "--sample", "3000", "--n-epochs", "60", "--quiet"]
    kill_when(args, has_open("layers/hidden2.npy"))         # the second layer's layout is under way
    assert [r.name for r in scan_runs(out)[0]] == ["r"]
    result = run_engine(*args)
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)


def test_what_killed_writers_leave_is_removed_by_the_next_write(trained, shared_data, tmp_path):
    """Planted leftovers of a dead process (its pid is gone): a ``.tmp`` in
    the run and in layers/, a hidden build folder beside it."""
    out = tmp_path / "runs"
    shutil.copytree(trained, out / "r")
    dead = _dead_pid()
    planted = [out / "r" / "layers" / f".hidden1.npy.{dead}.tmp", out / "r" / f".run.json.{dead}.tmp",
               out / f".x.{dead}.partial"]
    planted[0].write_bytes(b"half a layer")
    planted[1].write_text("{")
    planted[2].mkdir()
    result = run_engine("embed", "--run", out / "r", "--data-root", shared_data, "--metrics", "fast", "--quiet")
    assert result.returncode == 0, result.stderr
    assert_complete(out, "r", 4)


def test_a_failed_re_embed_leaves_the_previous_run_visible(trained, shared_data, tmp_path, monkeypatch):
    """A full disk part-way through writing layers again: the complete run
    is listed and unchanged, and nothing of the attempt remains."""
    from layerscope.engine import record
    from layerscope.engine.embed import embed_run

    out = tmp_path / "runs"
    shutil.copytree(trained, out / "r")
    before = digest(out / "r")
    real = record.RunWriter.add_layer

    def add_layer(self, name, values, source=None):
        if name == "hidden2":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, values, source)

    monkeypatch.setattr(record.RunWriter, "add_layer", add_layer)
    with pytest.raises(OSError, match="No space left"):
        embed_run(out / "r", data_root=str(shared_data), progress=False, metrics="fast")
    assert digest(out / "r") == before
    assert_complete(out, "r", 4)


def _dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_without_an_atomic_exchange_a_swap_cut_in_half_is_put_back(tmp_path, monkeypatch):
    """Where renameat2 cannot exchange, the swap is two renames; a kill
    between them leaves ``.NAME.PID.old`` and no ``NAME``, which the next
    writer puts back."""
    from layerscope.engine import staging

    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("old")
    with staging.rebuilt_run_folder(tmp_path / "r") as copy:
        (copy / "run.json").unlink()
        (copy / "run.json").write_text("new")
    assert (tmp_path / "r" / "run.json").read_text() == "new" and leftovers(tmp_path) == []

    os.rename(tmp_path / "r", tmp_path / f".r.{_dead_pid()}.old")          # killed between the two renames
    staging.sweep(tmp_path, depth=1)
    assert (tmp_path / "r" / "run.json").read_text() == "new" and leftovers(tmp_path) == []


def test_a_rebuild_never_follows_a_link_out_of_the_run(tmp_path):
    """A run folder is untrusted: a symlink planted in it is copied as a
    link when the run is rebuilt, never followed to what lies outside."""
    from layerscope.engine import staging

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("not the run's")
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "run.json").write_text("old")
    (tmp_path / "runs" / "r" / "extra").symlink_to(tmp_path / "outside")
    with staging.rebuilt_run_folder(tmp_path / "runs" / "r") as copy:
        assert (copy / "extra").is_symlink()
        assert (tmp_path / "outside" / "secret").stat().st_nlink == 1       # not hard-linked into the copy
    assert (tmp_path / "runs" / "r" / "extra").is_symlink()
