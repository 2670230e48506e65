"""A run folder is untrusted input: the checks every reader relies on.

Run folders travel (shared, downloaded, opened from a colleague's disk), so
``read_run`` parses ``run.json`` against the fields readers use (types,
ranges, sizes) and accepts only file names that are plain names inside the
run and regular files (no ``..``, no absolute path, no link, FIFO or folder).
Anything else is a ``UserError`` naming the file and what is wrong, which
makes that one run "broken" and leaves every other run readable.
"""

from __future__ import annotations

import json
import math
import re
import stat
from pathlib import Path

from layerscope.engine.errors import UserError

MAX_RECORD_BYTES = 64 << 20     # a run.json of ogbn-products is about 50 KB
MAX_NODES = 1 << 40
MAX_LAYERS = 1_000
MAX_CLASSES = 1 << 20
LAYER_DTYPES = ("float32", "float16", "float64")
_PLAIN = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}$")


def load_record(path: Path) -> dict:
    """``run.json`` (or ``run.pending.json``) as a dict: a regular file of
    bounded size holding one JSON object."""
    try:
        mode = path.lstat().st_mode
    except OSError as e:
        raise UserError(f"{path} cannot be read ({type(e).__name__})") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{path} is not a regular file")
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise UserError(f"{path} is larger than {MAX_RECORD_BYTES >> 20} MiB; not a run record")
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{path} is malformed ({type(e).__name__}: {str(e)[:120]})".replace("\n", " ")) from None
    if not isinstance(record, dict):
        raise UserError(f"{path} holds a JSON {type(record).__name__}, not an object")
    return record


def check_record(record: dict, where: Path, newest: int) -> None:
    """The fields of a complete run's record that readers use, with their
    types and ranges; raises ``UserError`` naming the first that is wrong."""
    # Typed checks by hand, not jsonschema or pydantic: neither is a dependency,
    # and these name the field and its allowed range in run.json's own words.
    version = record.get("schema_version")
    _int(version, f"{where}: schema_version", 1, newest)
    dataset = _dict(record.get("dataset"), f"{where}: dataset")
    _int(dataset.get("num_nodes"), f"{where}: dataset.num_nodes", 0, MAX_NODES)
    names = dataset.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > MAX_CLASSES:
        raise UserError(f"{where}: dataset.class_names is not a list of names")
    for key in ("name", "fingerprint"):
        if not isinstance(dataset.get(key), str):
            raise UserError(f"{where}: dataset.{key} is not text")
    model = _dict(record.get("model"), f"{where}: model")
    if not isinstance(model.get("model"), str):
        raise UserError(f"{where}: model.model is not text")
    _dict(record.get("metrics", {}), f"{where}: metrics")
    layers = record.get("layers", [])
    if not isinstance(layers, list) or len(layers) > MAX_LAYERS:
        raise UserError(f"{where}: layers is not a list of at most {MAX_LAYERS} entries")
    for i, entry in enumerate(layers):
        entry = _dict(entry, f"{where}: layers[{i}]")
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise UserError(f"{where}: layers[{i}].name is not a name")
        _int(entry.get("dim"), f"{where}: layers[{i}].dim", 1, 1 << 24)
        if entry.get("dtype") not in LAYER_DTYPES:
            raise UserError(f"{where}: layers[{i}].dtype {str(entry.get('dtype'))[:20]!r} is not one of "
                            f"{', '.join(LAYER_DTYPES)}")
        _metric_values(_dict(entry.get("metrics") or {}, f"{where}: layers[{i}].metrics"),
                       f"{where}: layers[{i}].metrics")
    if record.get("graph"):
        graph = _dict(record["graph"], f"{where}: graph")
        _int(graph.get("num_edges"), f"{where}: graph.num_edges", 0, 1 << 48)


def _metric_values(metrics: dict, where: str) -> None:
    """Each per-layer metric is a finite number or null; an accuracy lies in
    [0, 1], its interval (``<metric>_ci``) is two of them, low before high,
    and ``scored_nodes`` is a count."""
    def number(value, low: float = -math.inf, high: float = math.inf) -> bool:
        return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                and low <= value <= high)

    for key, value in metrics.items():
        key = str(key)
        if key.endswith("_ci"):
            good = isinstance(value, list) and len(value) == 2 and all(number(v, 0, 1) for v in value) \
                and value[0] <= value[1]
        elif key == "scored_nodes":
            good = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NODES
        else:
            good = value is None or number(value, *((0, 1) if key.endswith("_acc") else (-math.inf, math.inf)))
        if not good:
            raise UserError(f"{where}.{key[:40]} is not a valid value ({str(value)[:40]})")


def run_file(run_dir: Path, relative, what: str, folder: str | None = None) -> Path:
    """``run_dir / relative`` for a file name found in run.json: ``NAME`` (or
    ``folder/NAME``) with a plain name, a regular file inside the run."""
    if not isinstance(relative, str):
        raise UserError(f"{run_dir}: {what} is {type(relative).__name__}, not a file name")
    parts = relative.split("/")
    expected = [folder, "NAME"] if folder else ["NAME"]
    if len(parts) != len(expected) or (folder and parts[0] != folder) or not all(_PLAIN.match(p) for p in parts):
        raise UserError(f"{run_dir}: {what} {relative[:80]!r} is not a file name inside the run "
                        f"({'/'.join(expected)})")
    file = run_dir / relative
    try:
        mode = file.lstat().st_mode
    except OSError:
        raise UserError(f"{run_dir}: {what} {relative} is missing") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{run_dir}: {what} {relative} is not a regular file")
    return file


def check_nodes(file: Path, num_nodes: int, where: Path) -> None:
    """``nodes.parquet``: a Parquet file with one row per node and the columns readers use."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file)
        rows, columns = meta.metadata.num_rows, set(meta.schema_arrow.names)
    except Exception as e:      # pyarrow raises several types for a damaged file
        raise UserError(f"{where}: {file.name} is not a readable Parquet file ({type(e).__name__})") from None
    missing = {"node_id", "label", "category", "split", "degree"} - columns
    if missing:
        raise UserError(f"{where}: {file.name} lacks the columns {', '.join(sorted(missing))}")
    if rows != num_nodes:
        raise UserError(f"{where}: {file.name} has {rows:,} rows for {num_nodes:,} nodes")


def _int(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"{what} is {str(value)[:40]!r}, not a whole number in [{low}, {high:,}]")
    return value


def _dict(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{what} is {type(value).__name__}, not an object")
    return value
