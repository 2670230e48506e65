"""What the commands share: the help formatter, and how a run is printed."""

from __future__ import annotations

import argparse

from layerscope.engine.errors import UserError

METRICS_HELP = ("what to score per layer: full (kNN accuracy, silhouette, linear probe, CKA), fast (no probe: "
                "most of the time) or none (the dashboard scores on demand)")


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one: not for flags or None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def refuse_given(args: argparse.Namespace, names: tuple[str, ...], why: str) -> None:
    """One line naming every option of ``names`` the user gave, and ``why`` it does not apply."""
    given = [f"--{k.replace('_', '-')}" for k in names if getattr(args, k) is not None]
    if given:
        raise UserError(f"{', '.join(given)} {why}")


def layer_table(record: dict) -> str:
    """Per-layer metrics of one run, one row per layer."""
    lines = [f"  {'layer':12} {'dim':>6} {'kNN acc':>8} {'probe acc':>9} {'silhouette':>10}"]
    for e in record["layers"]:
        m = e.get("metrics") or {}
        knn, probe, sil = (("-" if m.get(k) is None else f"{m[k]:.4f}") for k in ("knn_acc", "probe_acc", "silhouette"))
        lines.append(f"  {e['name']:12} {e['dim']:>6} {knn:>8} {probe:>9} {sil:>10}")
    return "\n".join(lines)

def size_text(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""
