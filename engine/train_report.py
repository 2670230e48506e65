"""What ``engine train`` prints: a header before the first epoch, one line
per epoch with the loss and validation metrics, and a summary of the weights
it kept.

Test metrics appear once, in the summary, computed on the weights early
stopping kept (the best validation epoch). No epoch's test score is printed
or saved in ``history.csv``: a test number per epoch invites picking the
epoch by it, which makes the test score a validation score.
"""

from __future__ import annotations

import math

STILL_IMPROVING_SHARE = 0.1     # warn when --epochs ends a run whose best epoch is in its last tenth
STILL_IMPROVING_MIN = 2         # ... or in its last 2 epochs, for short runs


def header_line(dataset: dict, model: dict, device: str, fanout: list[int] | None, batch_size: int,
                sampler: str | None) -> str:
    """The run in one line: graph, split, classes, model, objective, device,
    full-batch or sampled.

    Args:
        dataset: ``GraphBundle.facts()`` (name, num_nodes, num_edges, num_classes, split_sizes).
        model: the model config (model, objective, num_layers, hidden_channels).
        device: ``engine.device.device_name``.
        fanout: neighbours sampled per layer; ``None`` trains full-batch.
    """
    sizes = dataset.get("split_sizes") or {}
    split = " / ".join(f"{sizes.get(k, 0):,}" for k in ("train", "val", "test"))
    mode = ("full-batch" if fanout is None else
            f"sampled: fan-out {','.join(map(str, fanout))}, batch {batch_size:,}, {sampler} sampler")
    return (f"{dataset['name']}: {dataset['num_nodes']:,} nodes, {dataset['num_edges']:,} edges, "
            f"split {split} (train / val / test), {dataset['num_classes']} classes | "
            f"{model['model']} {model.get('objective') or ''}, {model['num_layers']} layers x "
            f"{model['hidden_channels']} | {device} | {mode}")


def epoch_line(row: dict, epochs: int, improved: bool) -> str:
    """``epoch  12/200  loss 0.4123  val_loss 0.3890  val_acc 0.9012  1.2 s  best``:
    the training loss and the validation metrics only; ``best`` marks a new best validation score."""
    width = len(str(epochs))
    shown = [f"epoch {row['epoch']:>{width}}/{epochs}", f"loss {row['loss']:.4f}"]
    shown += [f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_") and isinstance(v, float)]
    shown.append(f"{row['seconds'] + row.get('eval_seconds', 0.0):.1f} s")
    return "  ".join(shown) + ("  best" if improved else "")


def improving_window(epochs_run: int) -> int:
    """The last epochs of a run in which a best epoch means "still improving"."""
    return max(STILL_IMPROVING_MIN, math.ceil(STILL_IMPROVING_SHARE * epochs_run))


def still_improving(epochs_run: int, best_epoch: int, max_epochs: int, stopped_early: bool) -> bool:
    """Whether ``--epochs`` cut a run short: it ran to the cap, not to early
    stopping, and its best validation epoch is in the last tenth of the
    epochs run (at least the last 2)."""
    if stopped_early or epochs_run < max_epochs:
        return False
    return best_epoch > epochs_run - improving_window(epochs_run)


def summary_lines(training: dict, best_row: dict | None, final: dict, seconds: float, epochs_here: int,
                  max_epochs: int) -> list[str]:
    """The end of training: the kept epoch and its validation metrics, the
    test metrics of its weights, the time taken, and a warning when
    ``--epochs`` stopped a run that was still improving.

    Args:
        training: run.json's ``training`` (epochs_run, best_epoch, stopped_early).
        best_row: the kept epoch's ``history.csv`` row.
        final: the kept weights' metrics (``Objective.evaluate(final=True)``).
        seconds: wall time of this process's training; ``epochs_here`` the epochs it ran.
    """
    best, run = training["best_epoch"], training["epochs_run"]
    valid = ", ".join(f"{k} {v:.4f}" for k, v in (best_row or {}).items()
                      if k.startswith("val_") and isinstance(v, float))
    test = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if k.startswith("test_") and isinstance(v, float))
    lines = [f"kept epoch {best} of {run}" + (f" (best validation: {valid})" if valid else "")
             + f"; test on the kept weights: {test or 'no test split'}; {epochs_here} epochs in {seconds:.1f} s"]
    if still_improving(run, best, max_epochs, training.get("stopped_early", False)):
        lines.append(f"warning: --epochs {max_epochs} ended training while validation was still improving "
                     f"(best epoch {best} of {run}, within its last {improving_window(run)} epochs); "
                     "a larger --epochs may do better")
    return lines


def final_line(record: dict, where: str, seconds: float) -> str:
    """The last line of ``engine train``: the run folder, the wall time of
    the whole command, the kept epoch and its test metrics."""
    training = record.get("training") or {}
    test = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()
                     if k.startswith("test_") and isinstance(v, float))
    return (f"{where}: done in {seconds:.1f} s; kept epoch {training.get('best_epoch')} of "
            f"{training.get('epochs_run')}; {test or 'no test split'}")
