"""PNG figures of a calibration: predicted against oracle block maps, and the loss curve (matplotlib, Agg)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from lemo.ops import informativeness
from lemo.predictor.recall import kept_mask
from lemo.utils.plotting import pyplot, save_figure

# Fail at import, where calibration catches ImportError and skips the plots, rather than mid-plot.
if importlib.util.find_spec("matplotlib") is None:
    raise ImportError(
        "calibration plots need matplotlib: pip install matplotlib (or pip install 'lemo[plot]')."
    )


def _pyplot():
    return pyplot("plots")


def _normalised(m: torch.Tensor) -> torch.Tensor:
    """Lower triangle scaled to [0, 1] by its maximum; the upper triangle is NaN (drawn blank)."""
    m = m.float().clamp_min(0)  # [nb, nb] a predicted map may dip below 0; the oracle never does
    m = m / m.max().clamp_min(1e-12)
    upper = torch.ones_like(m, dtype=torch.bool).triu(1)
    return m.masked_fill(upper, float("nan"))


def plot_block_maps(
    maps: dict[int, tuple[torch.Tensor, torch.Tensor]],
    path: str | Path,
    *,
    keep_ratio: dict[int, float] | float = 0.4,
    recall: dict[int, float] | None = None,
    sink_blocks: int = 1,
    local_blocks: int = 1,
    title: str | None = None,
) -> Path:
    """One row per layer: oracle map, predicted map (each normalised to its max), both I_n with kept blocks.

    Args:
        maps: {layer: (predicted [nb, nb], oracle [nb, nb])}.
        keep_ratio: per layer (or one value), to mark the blocks each side keeps.
        recall: per-layer recall shown in the titles, when known.
    """
    plt = _pyplot()
    layers = sorted(maps)
    fig, axes = plt.subplots(len(layers), 3, figsize=(13, 3.6 * len(layers)), squeeze=False)
    for row, layer in enumerate(layers):
        pred, oracle = maps[layer]
        r = keep_ratio[layer] if isinstance(keep_ratio, dict) else keep_ratio
        for ax, m, name in ((axes[row][0], oracle, "oracle"), (axes[row][1], pred, "predicted")):
            im = ax.imshow(
                _normalised(m.detach().float().cpu()).numpy(),
                cmap="viridis",
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            ax.set_title(f"layer {layer}: {name} block map")
            ax.set_xlabel("key block n")
            ax.set_ylabel("query block m")
            fig.colorbar(im, ax=ax, fraction=0.046)
        io, ip = informativeness(oracle.float()), informativeness(pred.float())  # [nb], [nb]
        io, ip = io / io.max().clamp_min(1e-12), ip / ip.abs().max().clamp_min(1e-12)
        ko, kp = kept_mask(io, r, sink_blocks, local_blocks), kept_mask(ip, r, sink_blocks, local_blocks)
        ax = axes[row][2]
        xs = torch.arange(io.shape[0]).numpy()
        ax.plot(xs, io.numpy(), label="oracle I_n", color="tab:blue")
        ax.plot(xs, ip.numpy(), label="predicted I_n", color="tab:orange")
        ax.scatter(xs[ko.numpy()], io[ko].numpy(), s=12, color="tab:blue", label="oracle keeps")
        ax.scatter(
            xs[kp.numpy()], ip[kp].numpy(), s=12, marker="x", color="tab:orange", label="predictor keeps"
        )
        rec = f", recall {recall[layer]:.3f}" if recall and layer in recall else ""
        ax.set_title(f"layer {layer}: I_n, keep {r:g}{rec}")
        ax.set_xlabel("block n")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_loss_curve(losses: Sequence[float], path: str | Path, *, prune_steps: Sequence[int] = ()) -> Path:
    """The calibration loss per step (log scale), with pruning rounds marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), list(losses), lw=1)
    for s in prune_steps:
        ax.axvline(s, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (mean over layers)")
    ax.set_title("predictor calibration" + (" (dotted: elastic pruning)" if prune_steps else ""))
    return save_figure(fig, path)
