"""Planetoid's raw files (Cora, CiteSeer, PubMed), read without running code.

The files ``ind.<name>.{x,tx,allx,y,ty,ally,graph}`` are Python 2 pickles.
PyG's ``read_planetoid_data`` opens them with plain ``pickle.load``, which
runs whatever a planted file asks for; a data root is a folder users download
and share, so this module unpickles them with an allow-list of the few types
they hold (NumPy arrays, a SciPy CSR matrix, a ``defaultdict`` of lists) and
then assembles the graph as PyG does, with PyG's own helpers.
"""

from __future__ import annotations

import codecs
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
from torch_geometric.data import Data
from torch_geometric.io import read_txt_array
from torch_geometric.io.planetoid import edge_index_from_dict
from torch_geometric.utils import index_to_mask

from layerscope.engine.errors import UserError

PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")

# NumPy's array reconstructor, wherever this NumPy version keeps it (numpy.core or numpy._core).
_RECONSTRUCT = np.zeros(0).__reduce__()[0]
# (module, name) as the pickles spell them -> the object they may build.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("scipy.sparse.csr", "csr_matrix"): scipy.sparse.csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): scipy.sparse.csr_matrix,
    ("collections", "defaultdict"): defaultdict,
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
    ("_codecs", "encode"): codecs.encode,       # how Python 3 writes bytes at protocol 2 (e.g. a re-saved file)
}


class _AllowList(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a Planetoid file never holds") from None


def read_pickle(path: Path):
    """One pickled Planetoid part, unpickled with the allow-list."""
    with open(path, "rb") as f:
        try:
            return _AllowList(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise UserError(f"{path} is not a Planetoid array file: {e}") from None


def _dense(value, path: Path) -> torch.Tensor:
    if scipy.sparse.issparse(value):
        value = value.toarray()
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype == object:
        raise UserError(f"{path} is not a Planetoid array file: it holds {type(value).__name__}, not a 2-D array")
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


def read_planetoid(raw: Path, name: str) -> Data:
    """The graph in ``raw/ind.<name>.*`` with its public split as masks, as
    ``torch_geometric.io.read_planetoid_data`` builds it (Cora, CiteSeer, PubMed)."""
    files = {part: raw / f"ind.{name}.{part}" for part in PARTS}
    x, tx, allx, y, ty, ally = (_dense(read_pickle(files[p]), files[p]) for p in ("x", "tx", "allx", "y", "ty", "ally"))
    graph = read_pickle(files["graph"])
    if not isinstance(graph, dict) or not all(isinstance(v, list) for v in graph.values()):
        raise UserError(f"{files['graph']} is not a Planetoid graph file: it holds {type(graph).__name__}")
    test_index = read_txt_array(str(files["test.index"]), dtype=torch.long)
    sorted_test = test_index.sort()[0]
    if name == "citeseer":
        # CiteSeer has isolated test nodes with no row in tx / ty: PyG adds zero rows for them.
        span = int(test_index.max() - test_index.min()) + 1
        tx_ext, ty_ext = torch.zeros(span, tx.size(1)), torch.zeros(span, ty.size(1))
        tx_ext[sorted_test - test_index.min()], ty_ext[sorted_test - test_index.min()] = tx, ty
        tx, ty = tx_ext, ty_ext
    features = torch.cat([allx, tx])
    features[test_index] = features[sorted_test]
    labels = torch.cat([ally, ty]).max(dim=1)[1]
    labels[test_index] = labels[sorted_test]
    n = labels.size(0)
    data = Data(x=features, edge_index=edge_index_from_dict(graph, num_nodes=n), y=labels)
    data.train_mask = index_to_mask(torch.arange(y.size(0)), size=n)
    data.val_mask = index_to_mask(torch.arange(y.size(0), y.size(0) + 500), size=n)
    data.test_mask = index_to_mask(test_index, size=n)
    return data
