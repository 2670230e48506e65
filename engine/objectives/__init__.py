"""What a model is trained to do: one registry of objectives.

A new objective is one module of this package (its class and its ``SPEC``,
see ``base.ObjectiveSpec``) and one line below; training, the layer-wise dump
and the CLI read everything they need from the entry.
"""

from __future__ import annotations

from layerscope.engine.errors import UserError
from layerscope.engine.objectives import dgi, infonce, margin, supervised, unsup, vgae
from layerscope.engine.objectives.base import Objective, ObjectiveSpec

OBJECTIVES: dict[str, ObjectiveSpec] = {
    "supervised": supervised.SPEC,
    "vgae": vgae.SPEC,
    "unsup": unsup.SPEC,
    "infonce": infonce.SPEC,
    "margin": margin.SPEC,
    "dgi": dgi.SPEC,
}

# Before the registry was flat, contrastive objectives had a two-level name
# (objective "contrastive", contrastive "infonce" | "margin"): run folders and
# checkpoints written then, and the CLI, still say it that way.
TWO_LEVEL = "contrastive"


def objective_name(objective: str | None, contrastive: str | None = None) -> str | None:
    """The registry's name for an objective, also spelt the old two-level way."""
    if objective == TWO_LEVEL:
        return contrastive or "infonce"
    return objective


def objective_spec(name: str | None) -> ObjectiveSpec:
    """The registry entry of ``name``, or one line naming the objectives there are."""
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = ["OBJECTIVES", "Objective", "ObjectiveSpec", "objective_name", "objective_spec"]
