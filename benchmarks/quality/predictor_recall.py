"""Predictor recall on SmolLM2-135M-Instruct (issue 3, item 5): calibrate on five Austen novels, evaluate on the
sixth (Persuasion, never seen in calibration) at 4K and 8K tokens, at the default keep ratio over the default
sparse layers.

    PYTHONPATH=src python benchmarks/quality/predictor_recall.py                        # both predictor kinds
    PYTHONPATH=src python benchmarks/quality/predictor_recall.py --pool concat --steps 400

Recall is defined in lemo.predictor.recall (forced sink/local blocks not counted). Rows are appended to
benchmarks/results/predictor_recall.csv, one per (predictor kind, layer, length) plus a "mean" row; the figure
benchmarks/results/predictor_recall.png is drawn from the rows of this run, and predictor_maps.png shows
predicted against oracle block maps on an 8K Persuasion chunk for three layers.

Cost on 2 CPU cores: collecting one 4K training chunk (frozen forward to the last sparse layer + 15 oracle
maps) takes 35-60 s, so the first run spends ~20-30 min collecting; with --cache-dir (default
$LEMO_CACHE/calib) later runs reuse the samples. Training then took 7 min for "concat" (300 steps) and 6 min
for "max" (600 steps), and evaluation ~10 min (4 x 4K + 2 x 8K held-out chunks).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
AUSTEN = Path(os.environ.get("LEMO_AUSTEN_DIR", ROOT.parent / "shared" / "data" / "austen"))
TRAIN_NOVELS = ("emma", "mansfieldpark", "northangerabbey", "prideprejudice", "sensesensibility")
EVAL_NOVEL = "persuasion"


def _commit() -> str:
    if os.environ.get("LEMO_COMMIT"):
        return os.environ["LEMO_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def _novel(name: str) -> str:
    """The text of one novel: the shared copy beside the repo when present, else lemo's fetched corpus."""
    path = AUSTEN / f"{name}.txt"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    from lemo.assets import austen_texts  # fallback when the shared copy is absent

    corpus = austen_texts()
    if name not in corpus.texts:
        raise FileNotFoundError(
            f"no Austen text {name!r} (corpus source {corpus.source}); set LEMO_AUSTEN_DIR."
        )
    return corpus.texts[name]


def _positions(n: int, k: int) -> list[int]:
    """k spread-out chunk indices of a novel with n chunks (skipping chunk 0, the front matter)."""
    base = [1, n // 2, n // 5, 2 * n // 5, 3 * n // 5 + 1, 4 * n // 5]
    extra = [round(i * (n - 1) / (k + 1)) for i in range(1, k + 1)]
    out: list[int] = []
    for p in base + extra:
        if 0 < p < n and p not in out:
            out.append(p)
    return out[:k]


def train_chunks(tok, seq_len: int, total: int) -> list[torch.Tensor]:
    """`total` chunks spread evenly over the five training novels, round-robin over novels."""
    from lemo.integrations.transformers.calibration import token_chunks

    per = -(-total // len(TRAIN_NOVELS))
    by_novel = []
    for name in TRAIN_NOVELS:
        ch = token_chunks([_novel(name)], tok, seq_len)
        by_novel.append([ch[p] for p in _positions(len(ch), per)])
    out = [c for group in zip(*by_novel) for c in group]
    return out[:total]


def eval_chunks(tok, seq_len: int, k: int) -> list[torch.Tensor]:
    from lemo.integrations.transformers.calibration import token_chunks

    ch = token_chunks([_novel(EVAL_NOVEL)], tok, seq_len)
    idx = [2, len(ch) // 2 + 1, len(ch) // 4, 3 * len(ch) // 4, len(ch) // 8, 5 * len(ch) // 8]
    seen: list[int] = []
    for i in idx:
        if 0 < i < len(ch) and i not in seen:
            seen.append(i)
    return [ch[i] for i in seen[:k]]


def _random_recall(nb: int, keep_ratio: float, forced: int = 2) -> float:
    """Expected recall of a scorer that picks the unforced blocks at random: kept share of the unforced ones."""
    free = nb - forced
    chosen = max(math.ceil(keep_ratio * nb - 1e-9), forced) - forced
    return chosen / free if free > 0 else 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--pool", nargs="+", default=["concat", "max"], help="predictor kinds (concat: the paper's)"
    )
    ap.add_argument("--steps", nargs="+", type=int, default=[300, 600], help="steps per --pool entry")
    ap.add_argument("--train-chunks", type=int, default=30)
    ap.add_argument("--seq-len", type=int, default=4096, help="calibration chunk length")
    ap.add_argument("--eval-lengths", nargs="+", type=int, default=[4096, 8192])
    ap.add_argument(
        "--eval-chunks", nargs="+", type=int, default=[4, 2], help="chunks per --eval-lengths entry"
    )
    ap.add_argument("--keep-ratio", type=float, default=0.4)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("LEMO_THREADS", "2")))
    ap.add_argument("--cache-dir", default=None, help="reuse collected samples (default: $LEMO_CACHE/calib)")
    ap.add_argument("--save", default=None, help="also save each predictor set to DIR/<pool>")
    ap.add_argument("--out", default=str(RESULTS / "predictor_recall.csv"))
    args = ap.parse_args(argv)
    if len(args.steps) == 1:
        args.steps = args.steps * len(args.pool)
    if len(args.steps) != len(args.pool) or len(args.eval_chunks) != len(args.eval_lengths):
        ap.error("give one --steps per --pool and one --eval-chunks per --eval-lengths")
    torch.set_num_threads(args.threads)
    command = "PYTHONPATH=src python benchmarks/quality/predictor_recall.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )

    # Imported after argument parsing, so that --help is instant.
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lemo.assets import smollm2_dir
    from lemo.config import PredictorTrainingConfig, SparsityConfig
    from lemo.integrations.transformers.calibration import HFCalibrationModel, calibrate
    from lemo.predictor import evaluate_recall
    from lemo.predictor.plot import plot_block_maps
    from lemo.predictor.samples import collect_sample
    from lemo.utils.env import lemo_cache_dir

    cache_dir = args.cache_dir or str(lemo_cache_dir() / "calib")
    model_dir = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    # fp32: CPU bf16 matmuls are slow on most CPUs, and the oracle is defined in fp32 anyway.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    sparsity = SparsityConfig(keep_ratio=args.keep_ratio)
    cm = HFCalibrationModel(model)
    layers = sparsity.resolve_layers(cm.num_layers)
    train = train_chunks(tok, args.seq_len, args.train_chunks)
    evals = {L: eval_chunks(tok, L, k) for L, k in zip(args.eval_lengths, args.eval_chunks)}
    print(
        f"SmolLM2: {len(layers)} sparse layers {layers[0]}..{layers[-1]}; {len(train)} training chunks of "
        f"{args.seq_len}; eval {', '.join(f'{len(v)} x {k}' for k, v in evals.items())} from {EVAL_NOVEL}",
        flush=True,
    )

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({args.threads} threads)",
        "commit": _commit(),
        "command": command,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    rows: list[dict[str, object]] = []
    best = None
    for pool, steps in zip(args.pool, args.steps):
        cfg = PredictorTrainingConfig(
            seq_len=args.seq_len, steps=steps, pool=pool, cache_dir=cache_dir, progress=True
        )
        t0 = time.perf_counter()
        pset = calibrate(model, train, sparsity=sparsity, config=cfg)
        wall = time.perf_counter() - t0
        rep = pset.report
        print(f"[{pool}] {rep.summary()}", flush=True)
        if args.save:
            pset.save(Path(args.save) / pool)
        store = {"device": torch.device(device), "dtype": torch.bfloat16}
        for L, chunks in evals.items():
            samples = [collect_sample(cm, c, layers, sparsity.block_size, store, cache_dir) for c in chunks]
            per = evaluate_recall(pset, cm, [], args.keep_ratio, samples=samples)
            # The predictor's own cost at this length: one forward per layer on the first sample.
            t1 = time.perf_counter()
            for i in layers:
                pset[i].scores(samples[0].x[i])
            pred_ms = 1000 * (time.perf_counter() - t1) / len(layers)
            nb = -(-L // sparsity.block_size)
            common = {
                "pool": pool,
                "seq_len": L,
                "keep_ratio": args.keep_ratio,
                "eval_chunks": len(chunks),
                "random_recall": round(_random_recall(nb, args.keep_ratio), 4),
                "steps": steps,
                "train_chunks": len(train),
                "train_seq_len": args.seq_len,
                "params_per_layer": pset.num_parameters() // len(layers),
                "calibration_train_s": round(rep.time_s["train"], 1),
                "calibration_wall_s": round(wall, 1),
                "predictor_ms_per_layer": round(pred_ms, 2),
                "final_loss": round(rep.loss_curve[-1], 5),
            }
            for i in layers:
                rows.append(
                    {
                        "layer": i,
                        **common,
                        "recall": round(per[i]["recall"], 4),
                        "mass_recall": round(per[i]["mass_recall"], 4),
                        **env,
                    }
                )
            mean_r = sum(v["recall"] for v in per.values()) / len(per)
            mean_m = sum(v["mass_recall"] for v in per.values()) / len(per)
            rows.append(
                {
                    "layer": "mean",
                    **common,
                    "recall": round(mean_r, 4),
                    "mass_recall": round(mean_m, 4),
                    **env,
                }
            )
            print(
                f"[{pool}] T={L}: mean recall {mean_r:.4f} (mass {mean_m:.4f}; random {common['random_recall']})",
                flush=True,
            )
            if max(evals) == L and (best is None or mean_r > best[0]):
                best = (mean_r, pool, pset, samples[0])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0].keys())
    new = not out.is_file()
    with out.open("a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")
    _plot_recall(rows, out.with_suffix(".png"), args.keep_ratio)
    if best is not None:
        _, pool, pset, sample = best
        show = [layers[0], layers[len(layers) // 2], layers[-1]]
        with torch.no_grad():
            maps = {i: (pset[i](sample.x[i]), sample.target[i]) for i in show}
        recall = {
            int(r["layer"]): float(r["recall"])
            for r in rows
            if r["pool"] == pool and r["seq_len"] == max(evals) and r["layer"] != "mean"
        }
        plot_block_maps(
            maps,
            out.parent / "predictor_maps.png",
            keep_ratio=args.keep_ratio,
            recall=recall,
            title=f"SmolLM2-135M, Persuasion (held out), {max(evals)} tokens, predictor '{pool}'",
        )
    return 0


def _plot_recall(rows: list[dict[str, object]], path: Path, keep_ratio: float) -> None:
    from lemo.predictor.plot import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    series = sorted({(r["pool"], r["seq_len"]) for r in rows})
    for pool, L in series:
        pts = [
            (int(r["layer"]), float(r["recall"]))
            for r in rows
            if r["pool"] == pool and r["seq_len"] == L and r["layer"] != "mean"
        ]
        mean = next(
            float(r["recall"])
            for r in rows
            if r["pool"] == pool and r["seq_len"] == L and r["layer"] == "mean"
        )
        ax.plot(*zip(*pts), marker="o", ms=3, label=f"{pool}, {L} tokens (mean {mean:.3f})")
    for L in sorted({r["seq_len"] for r in rows}):
        rnd = next(float(r["random_recall"]) for r in rows if r["seq_len"] == L)
        ax.axhline(rnd, color="grey", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], rnd, f" random at {L}", va="bottom", fontsize=7, color="grey")
    ax.axhline(0.95, color="tab:red", ls="--", lw=1, label="goal 0.95")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"recall at keep ratio {keep_ratio}")
    ax.set_title("SmolLM2-135M predictor recall on Persuasion (not calibrated on)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
