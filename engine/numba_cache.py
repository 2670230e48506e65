"""Keep UMAP's compiled code on disk, so a second process does not compile it again.

umap-learn 0.5 compiles about a hundred numba functions the first time a
process lays out a layer: 15-20 s of a first map on 2 cores, paid again by
every new dashboard or ``layerscope project`` process. numba can keep
compiled code on disk, but only for functions decorated ``cache=True``, and
umap-learn marks one of them so (pynndescent marks its own). ``umap_code``
switches numba's on-disk cache on for the others before their first call,
with ``Dispatcher.enable_caching``, which is what ``cache=True`` does at
decoration time. numba keys each entry by the function's source file and the
argument types, so a new umap-learn or numba version compiles afresh.

The cache lives in ``$NUMBA_CACHE_DIR`` when set, else in
``$XDG_CACHE_HOME/layerscope/numba`` (``~/.cache/layerscope/numba``), not
next to the installed package, which may be read-only.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from pathlib import Path

_PACKAGES = ("umap", "pynndescent")
_switched_on: Path | None = None
_at_switch = {"hits": 0, "misses": 0}     # what importing umap compiled (eager signatures), before the switch
_switching = threading.Lock()             # a warm-up thread and a page may ask at once


def cache_dir() -> Path:
    """Where numba keeps compiled code for this process."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "layerscope" / "numba"


def umap_code():
    """``import umap``, with every numba function of umap-learn and
    pynndescent set to keep its compiled code in ``cache_dir()``; returns
    the module. Cheap after the first call, and safe from several threads."""
    with _switching:
        if _switched_on is None:
            _switch_on()
    return sys.modules["umap"]


def _switch_on() -> None:
    global _switched_on, _at_switch
    directory = cache_dir()
    os.environ.setdefault("NUMBA_CACHE_DIR", str(directory))     # read when numba is first imported
    import numba

    numba.config.CACHE_DIR = str(directory)      # and used when a cache is switched on
    # A few of pynndescent's functions hold objects numba cannot write to disk:
    # they compile per process, as before, without a warning for each.
    warnings.filterwarnings("ignore", message="Cannot cache compiled function", category=numba.NumbaWarning)
    importlib.import_module("umap.umap_")      # umap and the modules a layout calls into
    for name, module in list(sys.modules.items()):
        if module is not None and name.split(".")[0] in _PACKAGES:
            _cache_functions(module)
    _at_switch = _counts()
    _switched_on = directory


def _cache_functions(module) -> int:
    """Switch the on-disk cache on for the numba functions ``module``
    defines that do not have it; how many were switched."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    switched = 0
    for value in list(vars(module).values()):
        if (isinstance(value, CPUDispatcher) and value.__module__ == module.__name__
                and isinstance(getattr(value, "_cache", None), NullCache)):
            try:
                value.enable_caching()
                switched += 1
            except RuntimeError:    # no place to write (e.g. no source file): it compiles per process, as before
                pass
    return switched


def cache_stats() -> dict[str, int]:
    """How many compiled versions of umap-learn's and pynndescent's
    functions this process loaded from the disk cache (``hits``) and
    compiled (``misses``) since ``umap_code`` switched the cache on, from
    numba's own counters. (Importing umap compiles a few functions declared
    with their types, before any switch: those are not counted.)"""
    counts = _counts()
    return {key: counts[key] - _at_switch[key] for key in counts}


def _counts() -> dict[str, int]:
    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    seen = set()
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in _PACKAGES:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and id(value) not in seen:
                seen.add(id(value))
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
    return {"hits": hits, "misses": misses}
