"""Run folders on disk: atomic writes and ``run.json``.

A run folder is complete when ``run.json`` exists; it is written last, through
a temporary name and ``os.replace``, so a reader never sees half a run.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import torch

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.csv"
RESUME_FILE = "last.pt"     # training state of an unfinished run; removed when it completes


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj, path: Path) -> None:
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_csv(path: Path, rows: list[dict]) -> None:
    tmp = _tmp(path)
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)


def default_run_name(dataset: str, model: str) -> str:
    """``amazon-photo-sage-20261121-101500``; a ``csv:DIR`` dataset is named by its folder."""
    kind, _, folder = dataset.partition(":")
    label = f"{kind}-{Path(folder).name}" if folder else dataset
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
    return f"{label}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
