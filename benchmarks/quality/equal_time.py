"""Equal GPU time (docs/design.md section 5): a config's steps times its measured step-time ratio against `exact`.

The ratios come from `lemo bench` on the Llama-3-8B shape at the training length (16K), with the same labels as
training (the completion-only rows supervise the last 2% of each row: `--completion 0.02`). Each capability
config maps to the bench config that runs the same computation; the selection's random draws and label
priority cost the same as oracle top-k to within 1% (same rows kept, scoring done once per forward).
No imports beyond the standard library: the report and the plots both read this.
"""

from __future__ import annotations

import csv
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
SPEED_CSV = RESULTS / "e2e_llama3_8b_capability.csv"
# capability config name (without "text:" / "@steps") -> the bench config with the same computation
BENCH_CONFIG = {
    "dense": "exact",
    "preset": "lemo-shared+gc",
    "prio-oracle": "lemo-prio+gc",
    "prio-random": "lemo-random+gc",
    "random": "lemo-random+gc",  # label priority changes which blocks, not how many: same cost
    "longlora": "longlora+gc",
}


def step_ratios(seq_len: int = 16384, completion: str = "0.02", path: Path = SPEED_CSV) -> dict[str, float]:
    """Median step time of each bench config over `exact`'s, at `seq_len` with those labels (first run each)."""
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok" and int(r["seq_len"]) == seq_len]
    rows = [r for r in rows if r.get("completion") == completion]
    times: dict[str, float] = {}
    for r in rows:
        times.setdefault(r["config"], float(r["median_step_s"]))
    return {c: t / times["exact"] for c, t in times.items()}


def config_name(spec: str) -> tuple[str, str, int | None]:
    """ "text:dense@48" -> ("text", "dense", 48)."""
    data, _, rest = spec.rpartition(":")
    name, _, steps = rest.partition("@")
    return data or "sup", name, int(steps) if steps else None


def gpu_time(spec: str, steps: int, ratios: dict[str, float]) -> float | None:
    """GPU time of a run in units of one `exact` step, or None when its config was not timed."""
    _, name, _ = config_name(spec)
    bench = BENCH_CONFIG.get(name)
    return steps * ratios[bench] if bench in ratios else None
