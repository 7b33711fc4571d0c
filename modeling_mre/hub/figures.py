"""The figures of a model card, drawn from `eval_results.json`: the training curve and the confusion matrix."""

from pathlib import Path
from typing import Any

import numpy as np


CONFUSION_MATRIX_FIGURE = "figures/confusion_matrix.png"
TRAINING_CURVE_FIGURE = "figures/training_curve.png"


def plot_training_curve(log_history: list[dict[str, Any]], best_epoch: int | None, path: Path) -> None:
    epochs = [record["epoch"] for record in log_history]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    loss_axes.plot(
        epochs, [record["train_loss"] for record in log_history], marker="o", color="tab:red", label="total"
    )
    # Each term as the model returns it (unweighted): the classification loss and every auxiliary loss.
    terms = [
        key for key in log_history[0] if key.startswith("train_") and key.endswith("_loss") and key != "train_loss"
    ]
    for key in terms:
        loss_axes.plot(
            epochs,
            [record.get(key) for record in log_history],
            marker=".",
            linestyle="--",
            label=key.removeprefix("train_"),
        )
    loss_axes.set(title="Training losses (mean per batch)", xlabel="epoch", ylabel="loss")
    if terms:
        loss_axes.legend(loc="upper right", fontsize="small")
    for key, label in (
        ("micro_f1", "micro-F1"),
        ("micro_precision", "micro-P"),
        ("micro_recall", "micro-R"),
        ("accuracy", "accuracy"),
    ):
        values = [100 * record[f"validation_{key}"] for record in log_history]
        metric_axes.plot(epochs, values, marker="o", label=label, linestyle="-" if key == "micro_f1" else "--")
    if best_epoch is not None:
        metric_axes.axvline(best_epoch, color="grey", linewidth=1, linestyle=":", label=f"kept (epoch {best_epoch})")
    metric_axes.set(title="Validation", xlabel="epoch", ylabel="%", ylim=(0, 100))
    metric_axes.legend(loc="lower right", fontsize="small")
    for axes in (loss_axes, metric_axes):
        axes.set_xticks(epochs)
        axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def plot_confusion_matrix(matrix: np.ndarray, label_names: list[str], split: str, path: Path) -> None:
    size = 2.5 + 0.45 * len(label_names)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    # Colour by the share of each gold row, so that rare relations are as readable as `None`.
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the gold relation")
    ticks = range(len(label_names))
    axes.set_xticks(ticks, label_names, rotation=90, fontsize="small")
    axes.set_yticks(ticks, label_names, fontsize="small")
    axes.set(xlabel="predicted relation", ylabel="gold relation", title=f"Confusion matrix ({split}, counts)")
    for gold, predicted in zip(*np.nonzero(matrix)):
        color = "white" if row_share[gold, predicted] > 0.5 else "black"
        count = str(matrix[gold, predicted])
        axes.text(predicted, gold, count, ha="center", va="center", fontsize="x-small", color=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def confusion_matrix_of(results: dict[str, Any], label_names: list[str]) -> tuple[str, np.ndarray] | None:
    """The confusion matrix of test (else validation) from eval_results.json, rows gold, columns predicted."""
    for split in ("test", "validation"):
        if "confusion_matrix" in results.get(split, {}):
            matrix = np.asarray(results[split]["confusion_matrix"], dtype=np.int64)
            if matrix.shape != (len(label_names), len(label_names)):
                raise ValueError(
                    f"eval_results.json: the {split} confusion matrix has shape {matrix.shape}, "
                    f"expected {len(label_names)} x {len(label_names)} for the model's relations"
                )
            return split, matrix
    return None
