"""The longest T of the offload stacks on the Llama-3-8B shape, predicted two independent ways (docs/longest.md).

One training step at those lengths takes longer than a 10-minute device call, so they are predicted, and the
prediction is written down with its inputs instead of typed into the docs:
- `plan`: `lemo plan`'s own memory model (`longest_seq_len`) under the GPU cap and the host memory given;
- `slope`: the measured rows of e2e_llama3_8b_offload.csv extrapolated linearly: GPU allocated (and reserved)
  peak between the two longest measured T of a config, and pinned host memory per token.

    python benchmarks/plan/longest_prediction.py --host-gib 124 --out benchmarks/results/longest_prediction.csv

`--host-gib` is the host memory the device machine reported available (`free -g` printed 124 GiB in the 256K call
of 2026-12-01); the pool keeps 2 GiB of headroom (lemo.memory.host).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from lemo.config import SparsityConfig  # noqa: E402
from lemo.memory.host import _HEADROOM  # noqa: E402
from lemo.plan import PlanConfig, longest_seq_len  # noqa: E402

MEASURED = ROOT / "benchmarks" / "results" / "e2e_llama3_8b_offload.csv"
# config: (elimination on, tile_tokens, tile_attention); all with offload="cpu", keep 0.6, checkpointing
STACKS = {
    "exact+offload": (False, 0, False),
    "lemo+offload": (True, 0, False),
    "exact+offload+tiled": (False, 8192, False),
    "lemo+offload+tiled": (True, 8192, False),
    "exact+offload+tiled-attn": (False, 8192, True),
    "lemo+offload+tiled-attn": (True, 8192, True),
}
FIELDS = [
    "config",
    "method",
    "longest_T",
    "bound_by",
    "gpu_cap_gib",
    "host_gib",
    "basis",
    "commit",
    "command",
]


def plan_longest(sparse: bool, tile: int, tile_attention: bool, cap: float, host: float) -> int:
    extra = dict(offload="cpu", tile_tokens=tile, tile_attention=tile_attention)
    sparsity = (
        SparsityConfig(keep_ratio=0.6, **extra) if sparse else SparsityConfig(sparse_layers="none", **extra)
    )
    cfg = PlanConfig(
        shape="llama3-8b",
        seq_len=8192,
        sparsity=sparsity,
        gradient_checkpointing=True,
        gpu_gib=cap,
        host_gib=host,
    )
    return longest_seq_len(cfg)


def slope_longest(rows: list[dict], cap: float, host: float) -> tuple[int, str, str] | None:
    """From the two longest measured T of one config: where the allocated peak, the reserved peak and the pinned
    pool cross their limits (linear in T with offload on: every per-token term is)."""
    # One row per T, the latest: a re-measured T (warm after cold) must not pair with itself.
    latest = {int(r["seq_len"]): r for r in rows if r["status"] == "ok"}
    ok = [latest[t] for t in sorted(latest)]
    if len(ok) < 2:
        return None
    a, b = ok[-2], ok[-1]
    ta, tb = int(a["seq_len"]), int(b["seq_len"])

    def cross(key: str, limit: float) -> float:
        ya, yb = float(a[key]), float(b[key])
        return tb + (limit - yb) * (tb - ta) / (yb - ya)

    host_per_token = float(b["host_pool_gib"]) / tb
    limits = {
        "GPU allocated": cross("peak_alloc_gib", cap),
        "GPU reserved": cross("peak_reserved_gib", cap),
        "host": (host - _HEADROOM / 2**30) / host_per_token,
    }
    commits = " and ".join(dict.fromkeys((a["commit"], b["commit"])))
    basis = f"T={ta},{tb} at commit {commits}; allocated-bound {limits['GPU allocated'] / 1024:.0f}K"
    by = min(("GPU allocated", "host"), key=limits.__getitem__)  # reserved: reported, see docs/longest.md
    return (
        int(limits[by]) // 8192 * 8192,
        by,
        basis + f", reserved-bound {limits['GPU reserved'] / 1024:.0f}K",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cap-gib", type=float, default=74.5)
    ap.add_argument("--host-gib", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    with MEASURED.open() as fh:
        measured = list(csv.DictReader(fh))
    out = []
    for name, (sparse, tile, tile_attention) in STACKS.items():
        common = dict(
            config=name, gpu_cap_gib=args.cap_gib, host_gib=args.host_gib, commit=commit.stdout.strip()
        )
        common["command"] = command
        longest = plan_longest(sparse, tile, tile_attention, args.cap_gib, args.host_gib)
        out.append(
            {**common, "method": "plan", "longest_T": longest, "bound_by": "plan", "basis": "lemo plan"}
        )
        slope = slope_longest([r for r in measured if r["config"] == name], args.cap_gib, args.host_gib)
        if slope is not None:
            T, by, basis = slope
            out.append({**common, "method": "slope", "longest_T": T, "bound_by": by, "basis": basis})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(out)
    for r in out:
        print(
            f"{r['config']:26} {r['method']:6} {int(r['longest_T']) / 1024:6.0f}K  {r['bound_by']:14} {r['basis']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
