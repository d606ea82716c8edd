"""The demo's plots: training curves from the trainer's log history, held-out accuracy against samples."""

from __future__ import annotations

import os

PANELS = (  # each panel: (log key, title) alternatives, the first one the log holds is drawn
    (("rewards/math_reward/mean", "outcome reward (train samples)"),),
    (("prm/loss", "PRM loss (BCE)"),),
    (("prm/accuracy", "PRM pairwise accuracy (train batch)"),),
    (("prm/heldout_pairwise_accuracy", "PRM pairwise accuracy (held-out pool)"),),
    (("prm/onpolicy_pairwise_accuracy", "pairwise accuracy (policy's rollouts now)"),),
    (("prm/heldout_length_correlation", "PRM reward vs length (held-out, r)"),),
    (("prm/heldout_error_localisation", "lowest step = first error (held-out)"),),
    # with dynamic sampling every trained group passes the filter (kept fraction 1): show what refilling found
    (("sampling/informative_fraction", "informative groups / sampled (refill)"),
     ("filter/kept_fraction", "kept fraction (accuracy filter)")),
)


# drawn on the same axes as a panel's key, dashed: the baseline it has to beat
OVERLAYS = {"prm/onpolicy_pairwise_accuracy": ("prm/onpolicy_reference_pairwise_accuracy", "reference log-lik.")}


def panel_curves(log_history: list[dict]) -> list[tuple[str, str]]:
    """(log key, title) of each panel in `PANELS`: its first alternative the log holds, else its last."""
    logged = {key for entry in log_history for key in entry}
    return [next((a for a in alternatives if a[0] in logged), alternatives[-1]) for alternatives in PANELS]


def plot_training_curves(log_history: list[dict], path: str, title: str = "PRIME on the demo task") -> str:
    """One panel per entry of `PANELS`, against the optimizer step; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = panel_curves(log_history)
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2))
    for ax, (key, label) in zip(axes, curves):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1, alpha=0.4, color="C0")
            ax.plot(steps, _moving_average(values, 10), lw=2, color="C0", label="PRM" if key in OVERLAYS else None)
        if key in OVERLAYS:
            overlay, overlay_label = OVERLAYS[key]
            baseline = [(entry["step"], entry[overlay]) for entry in log_history if overlay in entry]
            if baseline:
                ax.plot(*zip(*baseline), lw=1.5, ls="--", color="C1", label=overlay_label)
                ax.legend(fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _moving_average(values, window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_accuracy_curve(curves: dict[str, list[dict]] | list[dict], path: str) -> str:
    """Held-out accuracy against completions sampled, one line per run (or per method); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {"PRIME": curves} if isinstance(curves, list) else curves
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        ax.plot([p["samples"] for p in curve], [p["accuracy"] for p in curve], marker="o", label=label)
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
