"""What a run writer says while it writes: one bar over the layer files and
a line per layer scored.

Writing a layer is quick; scoring it (kNN accuracy, silhouette, a linear
probe) and the CKA between all layers at the end can take most of a minute on
a mid-sized graph, so the bar names the step under way (``computing hidden2
(3/4)``, ``scoring hidden2 (3/4)``, ``CKA of 4 layers``) and counts the
files written, input layer included, against the number there will be.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def score_text(metrics: dict) -> str:
    """A layer's metrics on one line: each float to 4 places, an accuracy
    with its interval (``<metric>_ci``) in brackets, and on how many nodes."""
    parts = []
    for key, value in metrics.items():
        if not isinstance(value, float):        # intervals, counts, None: shown with their metric or not at all
            continue
        interval = metrics.get(f"{key}_ci")
        if isinstance(interval, list) and len(interval) == 2 and all(isinstance(v, float) for v in interval):
            parts.append(f"{key} {value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]")
        else:
            parts.append(f"{key} {value:.4f}")
    text = ", ".join(parts)
    nodes = metrics.get("scored_nodes")
    return f"{text} on {nodes:,} nodes" if isinstance(nodes, int) and not isinstance(nodes, bool) else text


class LayerProgress:
    """The bar of one run being written, over ``total`` layer files; no bar
    when ``total`` is unknown (lines only) or ``enabled`` is false (silent)."""

    def __init__(self, total: int | None, enabled: bool):
        self.total, self.enabled, self.done = total, enabled, 0
        self.bar = tqdm(total=total, desc="layers", unit="layer", disable=not enabled or total is None)

    def _position(self) -> str:
        return f"({self.done + 1}/{self.total})" if self.total else ""

    def status(self, what: str) -> None:
        """Name the step under way on the bar: ``writing logits (4/4)``."""
        self.bar.set_description_str(what, refresh=True)

    def layer_step(self, verb: str, name: str) -> None:
        self.status(f"{verb} {name} {self._position()}".rstrip())

    def write(self, line: str) -> None:
        """A line above the bar (when enabled)."""
        if self.enabled:
            tqdm.write(line)

    def layer_done(self) -> None:
        """One more file written; the bar then says the next layer is being computed."""
        self.done += 1
        self.bar.update(1)
        if self.total and self.done < self.total:
            self.status(f"computing layer {self.done + 1}/{self.total}")

    def close(self) -> None:
        self.bar.close()
