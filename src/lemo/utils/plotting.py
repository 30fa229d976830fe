"""matplotlib, imported on first use: plots are optional (the `lemo[plot]` extra), training never needs them."""

from __future__ import annotations

from typing import Any


def pyplot(what: str = "plots") -> Any:
    """`matplotlib.pyplot` on the file-only Agg backend, or an ImportError that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window (headless servers, CI)
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            f"{what} need matplotlib: pip install matplotlib (or pip install 'lemo[plot]')."
        ) from err
    return plt


def save_figure(fig: Any, path: Any, dpi: int = 90) -> Any:
    """Lay out, write (making the folder) and close `fig`; returns the path as a `Path`."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        # A figure made with layout="constrained" keeps it: tight_layout would replace that engine and put a
        # legend placed "outside" back over the plot and the title.
        fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)  # figures are kept by pyplot until closed: a long calibration would accumulate them
    return out
