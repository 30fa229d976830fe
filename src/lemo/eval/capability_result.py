"""Results of a capability evaluation: one row per (task, length, depth, mode); CSV, JSON, table, heatmap."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lemo.utils.plotting import pyplot


@dataclass
class CapabilityRow:
    task: str
    length: int
    depth: float
    mode: str
    """"teacher" (teacher-forced exact match) or "greedy" (greedy-decoding exact match)."""
    accuracy: float
    """Fraction of the cell's samples answered exactly."""
    n: int
    """Samples in the cell."""
    token_accuracy: float | None = None
    """Mean fraction of answer tokens right (teacher mode; None for greedy)."""


@dataclass
class SampleOutcome:
    task: str
    length: int
    depth: float
    mode: str
    key: str
    correct: bool
    token_accuracy: float
    answer: str
    predicted: str
    """The model's top tokens at the answer positions (teacher) or its generation (greedy), decoded."""
    hits: list[bool] = field(default_factory=list)
    """Per answer token, whether the model's token there was right (lemo.eval.answer_kinds reads it per kind)."""


@dataclass
class CapabilityResult:
    rows: list[CapabilityRow]
    samples: list[SampleOutcome] = field(default_factory=list)
    """Per-sample outcomes (kept in JSON, not in CSV)."""

    @property
    def lengths(self) -> list[int]:
        return sorted({r.length for r in self.rows})

    @property
    def depths(self) -> list[float]:
        return sorted({r.depth for r in self.rows})

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(r.mode for r in self.rows))

    def accuracy(self, length: int, depth: float, mode: str) -> float:
        """Mean accuracy of the (length, depth, mode) cell (over tasks, when the result holds several)."""
        hits = [r for r in self.rows if (r.length, r.depth, r.mode) == (length, depth, mode)]
        if not hits:
            raise KeyError(f"no row for length={length}, depth={depth}, mode={mode!r}")
        return sum(r.accuracy for r in hits) / len(hits)

    def mean_over_depths(self) -> dict[tuple[int, str], float]:
        """{(length, mode): accuracy averaged over depths} (each depth weighs the same)."""
        return {
            (n, m): sum(self.accuracy(n, d, m) for d in self._depths_of(n, m)) / len(self._depths_of(n, m))
            for m in self.modes
            for n in self.lengths
            if self._depths_of(n, m)
        }

    def _depths_of(self, length: int, mode: str) -> list[float]:
        return sorted({r.depth for r in self.rows if (r.length, r.mode) == (length, mode)})

    def format_table(self) -> str:
        """Accuracy per length (rows) and depth (columns), one block per mode, plus the mean over depths."""
        depths, means = self.depths, self.mean_over_depths()
        tasks = ", ".join(dict.fromkeys(r.task for r in self.rows))
        lines = []
        for mode in self.modes:
            lines.append(f"{tasks} ({mode}, exact match)")
            lines.append(f"{'length':>8} | " + " ".join(f"{d:>6.2f}" for d in depths) + " |   mean")
            for n in self.lengths:
                cells = []
                for d in depths:
                    try:
                        cells.append(f"{self.accuracy(n, d, mode):>6.2f}")
                    except KeyError:
                        cells.append(f"{'-':>6}")
                mean = means.get((n, mode))
                lines.append(f"{n:>8} | " + " ".join(cells) + (f" | {mean:6.2f}" if mean is not None else ""))
        return "\n".join(lines)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        data = {"rows": [asdict(r) for r in self.rows], "samples": [asdict(s) for s in self.samples]}
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> CapabilityResult:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            [CapabilityRow(**r) for r in data["rows"]], [SampleOutcome(**s) for s in data.get("samples", [])]
        )

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        names = [f.name for f in fields(CapabilityRow)]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: "" if v is None else v for k, v in asdict(r).items()})
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> CapabilityResult:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = [
                CapabilityRow(
                    task=r["task"],
                    length=int(r["length"]),
                    depth=float(r["depth"]),
                    mode=r["mode"],
                    accuracy=float(r["accuracy"]),
                    n=int(r["n"]),
                    token_accuracy=float(r["token_accuracy"]) if r["token_accuracy"] else None,
                )
                for r in csv.DictReader(fh)
            ]
        return cls(rows)

    def plot_heatmap(self, path: str | Path) -> Path:
        """PNG heatmap per mode: length (y) by depth (x), the accuracy printed in each cell."""
        plt = _pyplot()
        lengths, depths, modes = self.lengths, self.depths, self.modes
        fig, axes = plt.subplots(
            1,
            len(modes),
            figsize=(1.2 + 0.9 * len(depths) * len(modes), 1.2 + 0.6 * len(lengths)),
            squeeze=False,
        )
        tasks = ", ".join(dict.fromkeys(r.task for r in self.rows))
        for ax, mode in zip(axes[0], modes):
            grid = []
            for n in lengths:
                row = []
                for d in depths:
                    try:
                        row.append(self.accuracy(n, d, mode))
                    except KeyError:
                        row.append(float("nan"))  # drawn blank
                grid.append(row)
            ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto", origin="lower")
            for i, row in enumerate(grid):
                for j, v in enumerate(row):
                    if v == v:  # not NaN
                        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(depths)), [f"{d:g}" for d in depths])
            ax.set_yticks(range(len(lengths)), [str(n) for n in lengths])
            ax.set_xlabel("needle depth")
            ax.set_ylabel("context length (tokens)")
            ax.set_title(f"{tasks}: {mode} exact match")
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _pyplot():
    return pyplot("the heatmap")
