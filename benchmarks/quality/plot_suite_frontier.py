"""Figure: the capability suite's score against GPU time, one point per config (mean and standard error over seeds).

    python benchmarks/quality/plot_suite_frontier.py benchmarks/results/suite_v3_smollm2.csv \\
        --speed benchmarks/results/e2e_llama3_8b_liger.csv --commit ca33484 \\
        --bench keep50=liger-default+gc/0.5@32768 supervision=liger-default+gc/0.6 \\
        random=liger-lemo-random+gc oracle-forward=liger-lemo-random+gc

A bench spec may end in #COMMIT, its own speed run (say, backward elimination timed in another run than the
default): `--bench backward-gradient=liger-lemo-bwd-grad+gc#5690162`, with that run's CSV among `--speed`.
writes `<csv stem>_frontier.png` beside the suite CSV (`<csv stem>_text_frontier.png` with `--form text`).
GPU time counts a run's steps in steps of the strongest exact stack (`liger-exact`) on the Llama-3-8B shape at
the training length: dense LoRA is that stack (1 a step, its `dense@N` snapshots included), a sparse config is
worth its bench config's measured step-time ratio, from the rows of the speed CSV at `--commit` (the ratio within
that one run) timed on rows labelled like the suite's form (`--completion 0` for plain text). The legend names
the speed row each ratio came from.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from common import save_figure  # beside this script

LABELS = {
    "dense": "dense LoRA",
    "default": "the default at the run's commit",
    "keep50": "supervision selector, keep 0.5 (the default)",
    "supervision": "supervision selector, keep 0.6",
    "oracle-forward": "evidence blocks kept first",
    "random": "labels first, random blocks (the default until 2026-12-05)",
    "backward-supervision": "backward elimination, supervision scorer, keep 0.6",
    "backward-gradient": "backward elimination, gradient scorer, keep 0.6",
    "tail20": "the default, last 20% of steps dense",
    "tail25": "the default, last 25% of steps dense",
    "dilate1": "the default, scores dilated by one block",
    "oracle-default": "the default told the evidence (upper bound)",
    "copy3": "the default, copied 3-grams' blocks kept",
    "copy3-tail20": "copy3, last 20% of steps dense",
    "copy3-tail15": "copy3, last 15% of steps dense",
    "copy3-keep60": "the default at keep 0.6",
    "oracle-tail20": "oracle-default, last 20% of steps dense",
}
COLORS = {
    "dense": "C0",
    "default": "C2",
    "keep50": "C2",
    "random": "C3",
    "supervision": "C4",
    "oracle-forward": "C1",
    "backward-supervision": "C5",
    "backward-gradient": "C6",
    "tail20": "C7",
    "tail25": "C8",
    "dilate1": "C9",
    "oracle-default": "k",
    "copy3": "C1",
    "copy3-tail20": "C5",
    "copy3-tail15": "C6",
    "copy3-keep60": "C4",
    "oracle-tail20": "0.4",
}


def load(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def labelled_like(row: dict[str, str], form: str) -> bool:
    """Whether a speed row was timed on rows like the suite's `form`: plain text labels every position
    (completion 0), prompt/completion rows only their answers (completion > 0). The two steps differ, because
    the selector keeps the labelled blocks first, so a ratio is taken only from rows of the same form."""
    completion = row.get("completion", "")
    if completion == "":
        return False  # timed before the bench recorded it: the form is unknown
    return (float(completion) == 0) == (form == "text")


def step_ratio(speed: list[dict[str, str]], spec: str, commit: str, seq_len: int, form: str = "sup") -> float:
    """The bench config's median step over liger-exact's, both at `seq_len` in the run of `commit` (a prefix),
    on rows labelled like `form`. `spec` is BENCH[/KEEP][@T][#COMMIT][%TAIL[#TAIL_COMMIT]]: the row at that keep
    ratio, at T instead of `seq_len` where the run timed no row at the training length, from run COMMIT instead
    of `commit`, and with a dense tail (SparsityConfig.dense_tail): that share of the steps at the same bench
    config's keep-1.0 row of the same run (or of run TAIL_COMMIT), the mean step weighted by the steps each kind
    takes."""
    spec, _, tail = spec.partition("%")
    if tail:
        tail, _, tail_commit = tail.partition("#")
        share = float(tail)
        dense = spec.partition("/")[0] + "/1.0" + spec.partition("/")[2].lstrip("0123456789.")
        if tail_commit:  # the keep-1.0 row was timed in another run than the sparse one
            dense = dense.partition("#")[0] + "#" + tail_commit
        return (1 - share) * step_ratio(speed, spec, commit, seq_len, form) + share * step_ratio(
            speed, dense, commit, seq_len, form
        )
    spec, _, own = spec.partition("#")
    commit = own or commit
    spec, _, at = spec.partition("@")
    bench, _, keep = spec.partition("/")
    seq_len = int(at) if at else seq_len

    def step(config: str, keep: str = "") -> float:
        for r in speed:
            ok = r.get("status", "ok") == "ok" and r["commit"].startswith(commit) and labelled_like(r, form)
            at_keep = not keep or r.get("keep_ratio") == keep
            if ok and r["config"] == config and int(r["seq_len"]) == seq_len and at_keep:
                return float(r["median_step_s"])
        raise SystemExit(
            f"no {config} row at T={seq_len} on {form} rows in the run of commit {commit}: check --commit"
        )

    return step(bench, keep) / step("liger-exact")


def spec_label(spec: str, commit: str) -> str:
    """A bench spec as the legend names it: the bench config and its run, and a dense tail's share and run."""
    sparse, _, tail = spec.partition("%")
    bench, _, own = sparse.partition("#")
    label = f"{bench}, {own or commit}"
    if tail:
        share, _, tail_commit = tail.partition("#")
        label += f"; last {float(share):.0%} at keep 1.0, {tail_commit or own or commit}"
    return label


def suite_points(rows: list[dict[str, str]], form: str, length: int, metric: str) -> dict[str, tuple]:
    """config (with @N) -> (steps, mean, standard error): per seed the mean over families, then over seeds."""
    per: dict[str, dict[str, list[float]]] = {}
    steps: dict[str, int] = {}
    for r in rows:
        if r["form"] != form or int(r["eval_len"]) != length or r["metric"] != metric:
            continue
        per.setdefault(r["config"], {}).setdefault(r["seed"], []).append(float(r["value"]))
        steps[r["config"]] = int(r["steps"])
    out = {}
    for config, seeds in per.items():
        means = [sum(v) / len(v) for v in seeds.values()]
        m = sum(means) / len(means)
        var = sum((x - m) ** 2 for x in means) / (len(means) - 1) if len(means) > 1 else 0.0
        out[config] = (steps[config], m, math.sqrt(var / len(means)))
    return out


def frontier(
    rows,
    ratios: dict[str, float],
    out: Path,
    form: str = "sup",
    length: int = 16384,
    specs: dict[str, str] | None = None,
) -> Path:
    """Both measures against GPU time; `specs` names, per sparse config, the speed row its ratio came from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 7.5))
    for ax, (metric, title) in zip(
        axes, (("exact_match", "exact match"), ("token_accuracy", "answer-token accuracy"))
    ):
        points = suite_points(rows, form, length, metric)
        dense = sorted((s, m, e) for c, (s, m, e) in points.items() if c.split("@")[0] == "dense")
        if dense:
            ax.errorbar([s for s, _, _ in dense], [m for _, m, _ in dense], [e for _, _, e in dense],
                        fmt="-o", color=COLORS["dense"], capsize=3, label=LABELS["dense"])  # fmt: skip
        for config, (s, m, e) in sorted(points.items()):
            if config.split("@")[0] == "dense" or config not in ratios:
                continue
            source = f"\n(timed as {specs[config]})" if specs and config in specs else ""
            ax.errorbar([s * ratios[config]], [m], [e], fmt="*", ms=14, capsize=3,
                        color=COLORS.get(config), label=f"{LABELS.get(config, config)}, {ratios[config]:.2f}x a step{source}")  # fmt: skip
        ax.set_xlabel("GPU time (steps of Liger exact, Llama-3-8B shape)")
        ax.set_title(f"held-out suite, {title} at {length // 1024}K (mean, SE over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            # below the axes: with seven configs a legend inside covers the points
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))
        else:
            ax.text(0.5, 0.5, "not in this CSV", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(
        f"SmolLM2-135M, YaRN x2 to 16K, LoRA r8, {'prompt/completion' if form == 'sup' else 'plain-text'} rows"
    )
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    ap.add_argument(
        "--speed",
        type=Path,
        nargs="+",
        required=True,
        help="the e2e CSVs with liger-exact and the bench configs",
    )
    ap.add_argument(
        "--commit", required=True, help="the speed run's commit (a prefix); a bench's #COMMIT wins"
    )
    ap.add_argument(
        "--bench", nargs="+", required=True, help="suite config=bench config, e.g. default=default+gc"
    )
    ap.add_argument("--seq-len", type=int, default=16384, help="the training length the ratios are taken at")
    ap.add_argument("--form", choices=("sup", "text"), default="sup")
    ap.add_argument(
        "--seeds",
        nargs="+",
        default=[],
        help="only these seeds (a run resumed with more seeds of some configs): the figure gets _seeds<S> in its name",
    )
    args = ap.parse_args(argv)
    speed = [row for path in args.speed for row in load(path)]
    pairs = [b.split("=", 1) for b in args.bench]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit("--bench takes suite=bench pairs, e.g. supervision=liger-lemo-sup-trim+gc")
    ratios = {suite: step_ratio(speed, bench, args.commit, args.seq_len, args.form) for suite, bench in pairs}
    specs = {suite: spec_label(bench, args.commit) for suite, bench in pairs}
    # the prompt/completion figure keeps its name; another form's gets its own, so neither overwrites the other
    tag = ("" if args.form == "sup" else f"_{args.form}") + (
        f"_seeds{''.join(args.seeds)}" if args.seeds else ""
    )
    out = args.csv.with_name(f"{args.csv.stem}{tag}_frontier.png")
    rows = [r for r in load(args.csv) if not args.seeds or r["seed"] in args.seeds]
    if not rows:
        raise SystemExit(f"no rows of seeds {' '.join(args.seeds)} in {args.csv}: check --seeds")
    print(frontier(rows, ratios, out, args.form, args.seq_len, specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
