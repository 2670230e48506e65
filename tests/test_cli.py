"""The command line: help, bad input (one line, exit 2, nothing left behind), resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from tests.conftest import ROOT, run_engine


def test_every_command_is_listed_and_train_options_are_the_config_fields():
    top = run_engine("--help")       # once as a user runs it; each command's help from the same parser
    assert top.returncode == 0
    from layerscope.engine.cli import build_parser
    from layerscope.engine.commands.train import config_from_args
    from layerscope.engine.config import TrainConfig, documented_fields, flag

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command in ("train", "embed", "list", "compare", "project", "import", "datasets", "dashboard"):
        assert f"\n  {command} " in top.stdout
    # Every TrainConfig field is an option, documented by its comment in the config (compared without
    # whitespace: argparse wraps lines), and the options' defaults are the config's.
    train = "".join(commands["train"].format_help().split())
    fields = documented_fields()
    assert len(fields) >= 35
    for _, field, comment in fields:
        assert f"--{flag(field.name)}" in train or f"--no-{flag(field.name)}" in train, field.name
        assert "".join(comment.replace("None: ", "default: ").split()) in train, field.name
    assert config_from_args(parser.parse_args(["train"])) == TrainConfig()
    args = parser.parse_args(["train", "--hidden", "32", "--no-amp", "--drop-edge", "0.1,0.2", "--fanout", "5,5,5",
                              "--objective", "contrastive", "--contrastive", "margin", "--l2-normalize"])
    cfg = config_from_args(args)
    assert (cfg.hidden_channels, cfg.amp, cfg.drop_edge, cfg.fanout, cfg.objective, cfg.l2_normalize) == \
        (32, False, (0.1, 0.2), [5, 5, 5], "margin", True)
    embed = commands["embed"].format_help()
    for option in ("--run", "--checkpoint", "--dtype", "--device", "--block-rows", "--data-root"):
        assert option in embed


def _bad_npz_root(tmp_path):
    raw = tmp_path / "root" / "Photo" / "raw"
    raw.mkdir(parents=True)
    (raw / "amazon_electronics_photo.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    return ["--dataset", "amazon-photo", "--data-root", tmp_path / "root"]


def _bad_csv_dir(tmp_path):
    graph = tmp_path / "graph"
    graph.mkdir()
    (graph / "nodes.csv").write_text("label,x0\n0,1.0\n1,oops\n")
    (graph / "edges.csv").write_text("src,dst\n0,1\n")
    return ["--dataset", f"csv:{graph}"]


BAD_INPUTS = {
    "unknown dataset": (lambda t: ["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    "unknown model": (lambda t: ["--model", "gat"], "invalid choice: 'gat'"),
    "missing files": (lambda t: ["--dataset", "amazon-computers", "--data-root", t / "empty"],
                      "missing amazon_electronics_computers.npz in"),
    "fanout length": (lambda t: ["--fanout", "15,10", "--layers", "3"], "--fanout has 2 values but --layers is 3"),
    "bad fanout": (lambda t: ["--fanout", "15,x,5"], "not a comma-separated list"),
    "bad split": (lambda t: ["--split", "80/30/10"], "add up to 100"),
    "corrupt npz": (_bad_npz_root, "is not a readable gnn-benchmark npz"),
    "corrupt csv": (_bad_csv_dir, "feature columns must be numbers"),
    "resume nothing": (lambda t: ["--resume", "--name", "never-ran"], "no last.pt to resume from"),
    "normalize gcn": (lambda t: ["--model", "gcn", "--l2-normalize"], "--l2-normalize applies to sage, not gcn"),
    "input dropout": (lambda t: ["--input-dropout", "1.5"], "--input-dropout must be in [0, 1), got 1.5"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path, case):
    make_args, message = BAD_INPUTS[case]
    out = tmp_path / "runs"
    result = run_engine("train", *make_args(tmp_path), "--out", out, "--epochs", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so cuda is not unavailable")
def test_an_unavailable_device_is_refused(tmp_path):
    result = run_engine("train", "--device", "cuda", "--out", tmp_path)
    assert result.returncode == 2 and "no CUDA device is available" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_a_run_name_in_use_is_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "run.json").write_text("{}")
    result = run_engine("train", "--out", tmp_path, "--name", "taken")
    assert result.returncode == 2 and "already exists; pick another --name" in result.stderr


def test_a_killed_run_resumes_where_it_stopped(tmp_path):
    args = [sys.executable, "-m", "engine", "train", "--dataset", "demo", "--hidden", "32", "--epochs", "60",
            "--patience", "60", "--out", str(tmp_path), "--name", "r", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    history = tmp_path / "r" / "history.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (history.exists() and len(pd.read_csv(history)) >= 5):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(pd.read_csv(history))
    assert 5 <= done_before < 60 and not (tmp_path / "r" / "run.json").exists()
    # A kill between writing history.csv and last.pt leaves an epoch the saved state has not reached.
    rows = pd.read_csv(history)
    pd.concat([rows, rows.tail(1).assign(epoch=rows["epoch"].max() + 1)]).to_csv(history, index=False)

    result = run_engine("train", "--resume", "--name", "r", "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resuming r after epoch" in result.stdout + result.stderr
    epochs = pd.read_csv(history)["epoch"].tolist()
    assert epochs == list(range(1, 61))                       # continued, not restarted
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["hidden_channels"] == 32             # the interrupted run's own settings
    assert not (tmp_path / "r" / "last.pt").exists()
