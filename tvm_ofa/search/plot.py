"""The accuracy/latency plot of a search: front, winners, budgets."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def plot_front(path: Path, winners: list, budgets: list, front: Any, y_label: str,
               measured: Sequence[float | None] = ()) -> Path:
    """Write a PNG: the Pareto front (if any), the chosen winners (predicted), their measured
    latencies (when given) and the budgets as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    if front is not None:
        ax.step(front.latency_ms, front.accuracy, where="post", color="tab:blue", lw=1, alpha=0.6)
        ax.scatter(front.latency_ms, front.accuracy, s=10, color="tab:blue", label="Pareto front")
    for i, b in enumerate(budgets):
        ax.axvline(b, color="gray", ls="--", lw=0.8, label="budget" if i == 0 else None)
    ax.scatter([w.latency_ms for w in winners], [w.accuracy for w in winners], s=60, marker="*",
               color="tab:red", zorder=3, label="chosen")
    points = [(m, w.accuracy) for m, w in zip(measured, winners) if m is not None]
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=50, marker="x", color="black",
                   zorder=3, label="chosen, measured")
        for w, m in zip(winners, measured):
            if m is not None:
                ax.annotate("", (m, w.accuracy), (w.latency_ms, w.accuracy),
                            arrowprops={"arrowstyle": "->", "color": "gray", "lw": 0.8})
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(y_label)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
