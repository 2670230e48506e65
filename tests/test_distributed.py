"""Several processes, one run: ``torchrun`` with gloo on the CPU, two ranks of
one thread each, on Amazon Photo; and the pieces that split work between
ranks, checked in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from layerscope.engine.distributed import Cluster, digest_sum, set_digest
from tests.conftest import ROOT, run_engine

# Sampled GraphSAGE as in the paper (fan-out 15,10,5), small enough for CI:
# about 2 s an epoch on 2 CPU cores.
TRAIN = ("train", "--dataset", "amazon-photo", "--split", "60/20/20", "--model", "sage", "--fanout", "15,10,5",
         "--hidden", "64", "--batch-size", "256", "--lr", "0.005", "--quiet")


def torchrun(*args: str) -> list[str]:
    """The command line of ``torchrun --standalone --nproc-per-node 2 -m engine ARGS``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "engine", *map(str, args)]


def _env(shared_data: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LAYERSCOPE_DATA": str(shared_data)}


def run_torchrun(*args: str, shared_data: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=_env(shared_data))


def _layers(run: Path) -> dict[str, np.ndarray]:
    record = json.loads((run / "run.json").read_text())
    return {layer["name"]: np.load(run / layer["file"]) for layer in record["layers"]}


SEEDS = (0, 1, 2)      # one seed's two runs differ by up to a point by chance: their means are compared


@pytest.fixture(scope="module")
def pair(shared_data, tmp_path_factory):
    """The same runs trained in one process (2 threads) and by two ranks (1
    thread each), seeds 0-2; seed 0's are ``single`` and ``double``."""
    out = tmp_path_factory.mktemp("distributed")
    common = (*TRAIN, "--epochs", "30", "--out", out, "--metrics", "none")
    outputs = {}
    for seed in SEEDS:
        suffix = str(seed) if seed else ""
        single = run_engine(*common, "--seed", seed, "--name", f"single{suffix}",
                            env={"LAYERSCOPE_DATA": str(shared_data)}, timeout=900)
        assert single.returncode == 0, single.stderr
        double = run_torchrun(*common, "--seed", seed, "--name", f"double{suffix}", shared_data=shared_data)
        assert double.returncode == 0, double.stdout + double.stderr
        outputs[seed] = double
    return out, outputs[0]


def _listed(stdout: str) -> list[str]:
    """The run names ``engine list`` printed, one per line."""
    return [line.split()[0] for line in stdout.splitlines() if line.strip()]


def _test_accuracies(out: Path, name: str) -> np.ndarray:
    return np.array([json.loads((out / f"{name}{seed or ''}" / "run.json").read_text())["metrics"]["test_acc"]
                     for seed in SEEDS])


def test_two_ranks_train_to_the_accuracy_of_one_process_on_disjoint_shards(pair):
    """Two ranks sample other neighbourhoods than one process (each rank its
    own generator), so one seed's runs differ as two seeds' do (up to a point
    on Photo's 1,530 test nodes): the mean over three seeds is within a point."""
    out, result = pair
    single, double = (json.loads((out / name / "run.json").read_text()) for name in ("single", "double"))
    assert double["training"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert single["training"]["distributed"] is None
    ones, twos = _test_accuracies(out, "single"), _test_accuracies(out, "double")
    difference = twos - ones
    print(f"\ntest accuracy, seeds {list(SEEDS)}: one process {ones.round(4).tolist()} (mean {ones.mean():.4f}), "
          f"two ranks {twos.round(4).tolist()} (mean {twos.mean():.4f}); difference {difference.mean():+.4f} "
          f"± {difference.std(ddof=1) / np.sqrt(len(SEEDS)):.4f} (standard error)")
    assert abs(difference.mean()) <= 0.01, (ones, twos)
    assert twos.min() > 0.9 and ones.min() > 0.9

    # Every epoch the two ranks trained on disjoint parts that together are the
    # training split: their seed counts add up to it, and so do the digests of
    # their seed sets (a digest that adds over disjoint sets).
    nodes = pd.read_parquet(out / "double" / "nodes.parquet")
    train = np.flatnonzero(nodes["split"].to_numpy() == "train")
    history = pd.read_csv(out / "double" / "history.csv")
    assert len(history) >= 2
    for epoch, shards in zip(history["epoch"], history["seed_shards"]):
        counts, digests = zip(*(part.split(":") for part in shards.split()))
        assert len(counts) == 2 and all(int(c) > 0 for c in counts), (epoch, shards)
        assert sum(map(int, counts)) == train.size, (epoch, shards)
        assert digest_sum(list(digests)) == set_digest(train), (epoch, shards)

    # Rank 0 alone printed, and the run reads back like any other.
    assert result.stdout.count("(best validation:") == 1, result.stdout
    listed = run_engine("list", "--out", out)
    assert listed.returncode == 0 and _listed(listed.stdout).count("double") == 1, listed.stdout + listed.stderr
    assert set(_layers(out / "double")) == {"input", "hidden1", "hidden2", "logits"}


def test_two_ranks_embed_the_layers_one_process_writes(pair, shared_data):
    out, _ = pair
    before = _layers(out / "single")
    result = run_torchrun("embed", out / "single", "--quiet", shared_data=shared_data)   # RUN as a positional
    assert result.returncode == 0, result.stdout + result.stderr
    after = _layers(out / "single")
    assert set(after) == set(before)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], atol=1e-5, rtol=0, err_msg=name)
    record = json.loads((out / "single" / "run.json").read_text())
    assert record["embedding"]["processes"] == 2
    assert all(layer["metrics"]["knn_acc"] > 0.5 for layer in record["layers"])   # scored, by either rank
    # A layer scored by rank 1 from the rows it kept has the metrics one process gives the whole layer.
    from layerscope.engine.quality import quality_sample, score_layer

    nodes = pd.read_parquet(out / "single" / "nodes.parquet")
    labels = nodes["label"].to_numpy()
    split = {key: np.flatnonzero(nodes["split"].to_numpy() == key) for key in ("train", "val", "test")}
    hidden1 = next(layer for layer in record["layers"] if layer["name"] == "hidden1")
    expected = score_layer(after["hidden1"], labels, quality_sample(labels, split))
    assert set(hidden1["metrics"]) == set(expected)
    for key, value in expected.items():     # approx compares a dict's numbers, not the lists of its intervals
        assert hidden1["metrics"][key] == (value if value is None else pytest.approx(value)), key
    listed = run_engine("list", "--out", out)
    assert _listed(listed.stdout).count("single") == 1, listed.stdout
    assert not [p for p in (out / "single").rglob(".*")], "temporary files left behind"


def _workers(agent: int) -> dict[int, int]:
    """``LOCAL_RANK -> pid`` of the worker processes ``torchrun``'s agent ``agent`` started."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == agent:
                environ = (stat.parent / "environ").read_bytes().split(b"\0")
                rank = next(int(v.split(b"=")[1]) for v in environ if v.startswith(b"LOCAL_RANK="))
                found[rank] = int(stat.parent.name)
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return found


def test_a_killed_rank_leaves_no_complete_run_and_resume_completes_it(shared_data, tmp_path):
    args = (*TRAIN, "--epochs", "6", "--out", tmp_path, "--name", "cut", "--metrics", "none")
    agent = subprocess.Popen(torchrun(*args), cwd=ROOT, env=_env(shared_data), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    history = tmp_path / "cut" / "history.csv"
    deadline = time.monotonic() + 300
    while not (history.exists() and len(pd.read_csv(history)) >= 2 and (tmp_path / "cut" / "last.pt").exists()):
        assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read()
        time.sleep(0.2)
    workers = _workers(agent.pid)
    assert sorted(workers) == [0, 1], workers
    os.kill(workers[1], signal.SIGKILL)
    output, _ = agent.communicate(timeout=120)
    assert agent.returncode != 0, output

    assert not (tmp_path / "cut" / "run.json").exists()
    assert (tmp_path / "cut" / "last.pt").exists()
    listed = run_engine("list", "--out", tmp_path)
    assert not [line for line in listed.stdout.splitlines() if line.split()[:1] == ["cut"]], listed.stdout
    assert "--resume" in listed.stderr, listed.stderr

    resumed = run_torchrun(*args, "--resume", shared_data=shared_data)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming cut after epoch" in resumed.stdout + resumed.stderr
    record = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert record["training"]["epochs_run"] == 6 and record["training"]["distributed"]["world_size"] == 2
    epochs = pd.read_csv(tmp_path / "cut" / "history.csv")["epoch"].tolist()
    assert epochs == list(range(1, 7)), epochs
    assert record["metrics"]["test_acc"] > 0.7


def test_a_label_free_objective_with_a_projection_head_trains_data_parallel(shared_data, tmp_path):
    """GRACE's head is trained beside the encoder: both go through one
    DistributedDataParallel step, and the anchors (every node) are dealt out."""
    result = run_torchrun("train", "--dataset", "amazon-photo", "--objective", "infonce", "--model", "sage",
                          "--layers", "2", "--fanout", "10,5", "--epochs", "2", "--batch-size", "512",
                          "--out", tmp_path, "--name", "grace", "--quiet", "--metrics", "none",
                          shared_data=shared_data)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / "grace" / "run.json").read_text())
    assert record["training"]["distributed"]["world_size"] == 2 and record["metrics"]["test_acc"] > 0.6
    for shards in pd.read_csv(tmp_path / "grace" / "history.csv")["seed_shards"]:
        counts, digests = zip(*(part.split(":") for part in shards.split()))
        assert sum(map(int, counts)) == 7_650 and digest_sum(list(digests)) == set_digest(np.arange(7_650))


def test_full_batch_training_under_torchrun_is_refused_in_one_line(shared_data, tmp_path):
    result = run_torchrun("train", "--dataset", "amazon-photo", "--model", "sage", "--epochs", "1",
                          "--out", tmp_path, "--quiet", shared_data=shared_data, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: under torchrun training is data-parallel over sampled batches: give --fanout "
                      "(e.g. --fanout 15,10,5)"], result.stderr
    assert not list(tmp_path.iterdir())


# -- the pieces, in one process


@pytest.mark.parametrize("command", ["train", "embed"])
def test_every_option_has_a_spelling_torchrun_passes_through(command):
    """torchrun's parser takes any option after the script that abbreviates
    one of its own (--run of --run-path, --monitor of --monitor-interval) and
    stops: each option the engine takes has a spelling that reaches it."""
    import re

    from torch.distributed.run import get_args_parser

    from layerscope.engine.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    launcher = get_args_parser()
    for action in sub._actions:
        spellings = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        if not spellings or action.dest == "run":      # embed's --run: the positional RUN is its other spelling
            continue
        passed = []
        for option in spellings:
            try:
                args = launcher.parse_args(["--standalone", "-m", "engine", command, option, "x"])
                passed.append(option in args.training_script_args)
            except SystemExit:
                passed.append(False)
        assert any(passed), f"{command} {spellings}: torchrun takes every spelling"
    assert re.search(r"\bRUN\b", sub.format_usage())


def test_row_parts_cover_every_row_once_in_rank_order():
    for rows in (0, 1, 7, 7650):
        for world in (1, 2, 3, 8):
            parts = [Cluster(rank, world).part(rows) for rank in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(stop - start for start, stop in parts) - min(stop - start for start, stop in parts) <= 1


def test_batch_shards_are_disjoint_cover_each_batch_and_take_equal_steps():
    order = torch.randperm(1_001, generator=torch.Generator().manual_seed(0))
    batches = list(order.split(100))        # the last batch holds one node: too few for three ranks
    shards = [Cluster(rank, 3).shard_batches(batches) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == 10
    everything = torch.cat([torch.cat(s) for s in shards])
    assert everything.numel() == 1_001 and torch.unique(everything).numel() == 1_001
    assert all(part.numel() >= 33 for s in shards for part in s)
    assert Cluster().shard_batches(batches) is batches


def test_set_digests_add_up_over_disjoint_sets_only():
    nodes = np.random.default_rng(0).permutation(10_000)
    a, b = nodes[:4_000], nodes[4_000:]
    assert digest_sum([set_digest(a), set_digest(b)]) == set_digest(nodes)
    assert set_digest(np.sort(a)) == set_digest(a)
    overlapping = np.concatenate([a, nodes[3_999:4_001]])
    assert digest_sum([set_digest(overlapping), set_digest(b)]) != set_digest(nodes)
