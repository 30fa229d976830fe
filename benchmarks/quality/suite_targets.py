"""Issue 19's targets, judged on one suite run: a CSV of verdicts and the same as a markdown table.

    python benchmarks/quality/suite_targets.py benchmarks/results/suite_v12_smollm2.csv \\
        --equal-time sup=dense@42 text=dense@44 \\
        --speed benchmarks/results/e2e_llama3_8b_copy3.csv benchmarks/results/e2e_llama3_8b_copy3_text.csv \\
        --commit ef2a0ab --step sup=liger-default-copy3+gc text=liger-default+gc

writes `<csv stem>_targets.csv` beside the suite CSV and prints its table. The targets, at the suite's longest
length (16K), on the suite mean (per seed the mean over families, then mean and standard error over seeds):
- equal steps: the chosen config at least 0.97x dense LoRA, in both forms;
- equal GPU time: above dense LoRA's snapshot of the same GPU time (`--equal-time`), a tie not being a win;
- the oracle: the chosen config within 0.03 of the evidence oracle (below it by at most 0.03);
- perplexity: held-out plain-text perplexity at most 1.01x dense's at equal steps;
- step: the chosen config's step at most 0.75x Liger exact's at 32K on the Llama-3-8B shape (`--step`, the
  speed run's rows labelled like each form), selector included.
Each of the first three is judged on exact match and on answer-token accuracy, one row each.
"""

from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from plot_suite_frontier import load, step_ratio  # beside this script

from lemo.eval.suite_summary import SUITE, TIE_SE, summarize

# benchmarks/ on the path: the table printed is docs/results.md's table of the CSV
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reporting.quality_tables import FORM_NAMES, targets_table

METRICS = ("exact_match", "token_accuracy")
EQUAL_STEPS, ORACLE_GAP, PPL_RATIO, STEP_RATIO = 0.97, 0.03, 1.01, 0.75


@dataclass
class Verdict:
    """One target on one form and metric: what was compared, the measure, and whether the target is met."""

    target: str
    form: str
    metric: str
    config: str
    against: str
    config_mean: float
    against_mean: float
    measure: float  # a ratio (config / against) or a difference (config - against), as `target` says
    limit: float
    diff_se: float  # standard error of the difference; NaN where one side has no error estimate
    met: bool


def _cells(rows: list[dict[str, str]], length: int) -> dict[tuple[str, str, str], dict]:
    """(config, form, metric) -> summary row of the suite mean (or of perplexity) at `length`."""
    families = sorted({r["family"] for r in rows if r["metric"] == "exact_match"})
    summary = summarize(rows, families)
    return {
        (s["config"], s["form"], s["metric"]): s
        for s in summary
        if int(s["eval_len"]) == length and (s["family"] == SUITE or s["metric"] == "ppl")
    }


def _pair(cells: dict, a: str, b: str, form: str, metric: str) -> tuple[dict, dict] | None:
    left, right = cells.get((a, form, metric)), cells.get((b, form, metric))
    return (left, right) if left and right else None


def _diff_se(left: dict, right: dict) -> float:
    return math.sqrt(float(left["se"]) ** 2 + float(right["se"]) ** 2)


def judge(
    rows: list[dict[str, str]],
    config: str,
    oracle: str,
    equal_time: dict[str, str],
    length: int = 16384,
    reference: str = "dense",
) -> list[Verdict]:
    """The quality targets of `config` in every form the run holds; a comparison whose configs are not in the
    run is left out (the caller reports what is missing)."""
    cells, out = _cells(rows, length), []

    def add(target, form, metric, other, pair, measure, limit, met):
        left, right = pair
        out.append(Verdict(target, form, metric, config, other, float(left["mean"]), float(right["mean"]),
                           measure, limit, _diff_se(left, right), met))  # fmt: skip

    for form in sorted({r["form"] for r in rows}):
        for metric in METRICS:
            if pair := _pair(cells, config, reference, form, metric):
                ratio = float(pair[0]["mean"]) / float(pair[1]["mean"])
                add("equal steps", form, metric, reference, pair, ratio, EQUAL_STEPS, ratio >= EQUAL_STEPS)
            if form in equal_time and (pair := _pair(cells, config, equal_time[form], form, metric)):
                diff = float(pair[0]["mean"]) - float(pair[1]["mean"])
                # above it by at least TIE_SE standard errors of the difference: a tie is not a win
                add(
                    "equal GPU time",
                    form,
                    metric,
                    equal_time[form],
                    pair,
                    diff,
                    0.0,
                    diff >= TIE_SE * _diff_se(*pair),
                )
            if pair := _pair(cells, config, oracle, form, metric):
                diff = float(pair[0]["mean"]) - float(pair[1]["mean"])
                add("oracle", form, metric, oracle, pair, diff, -ORACLE_GAP, diff >= -ORACLE_GAP)
        if form == "text" and (pair := _pair(cells, config, reference, form, "ppl")):
            ratio = float(pair[0]["mean"]) / float(pair[1]["mean"])
            add("perplexity", form, "ppl", reference, pair, ratio, PPL_RATIO, ratio <= PPL_RATIO)
    return out


def judge_step(
    speed: list[dict[str, str]], benches: dict[str, str], commit: str, config: str, seq_len: int = 32768
) -> list[Verdict]:
    """The step target per form: the bench config's median step over Liger exact's at `seq_len`."""
    out = []
    for form, bench in sorted(benches.items()):
        ratio = step_ratio(speed, bench, commit, seq_len, form)
        out.append(Verdict("step", form, f"step at {seq_len // 1024}K", config, "liger-exact", ratio, 1.0, ratio,
                           STEP_RATIO, math.nan, ratio <= STEP_RATIO))  # fmt: skip
    return out


def unjudged(verdicts: list[Verdict], forms: set[str], args: argparse.Namespace) -> list[str]:
    """A line for each target the run or the flags left unjudged, with what would judge it: a table of four
    targets must not read as a run that met all five."""
    judged = {(v.target, v.form) for v in verdicts}
    wanted = {
        "equal steps": f"{args.config} and dense LoRA in this form in the run",
        "equal GPU time": "--equal-time FORM=dense@N, with that snapshot in the run",
        "oracle": f"{args.oracle} in the run",
        "step": "--speed and --step FORM=BENCH",
    }
    lines = [f"not judged: {t}, {FORM_NAMES[f]} (needs {need})" for t, need in wanted.items() for f in sorted(forms)
             if (t, f) not in judged]  # fmt: skip
    if "text" in forms and ("perplexity", "text") not in judged:
        lines.append(f"not judged: perplexity, plain text (needs ppl rows of {args.config} and dense LoRA)")
    return lines


def _pairs(specs: list[str], flag: str) -> dict[str, str]:
    pairs = [s.split("=", 1) for s in specs]
    if any(len(p) != 2 or p[0] not in FORM_NAMES for p in pairs):
        raise SystemExit(f"{flag} takes FORM=CONFIG pairs with FORM sup or text, e.g. {flag} sup=dense@42")
    return dict(pairs)


def _seeds(rows: list[dict[str, str]], seeds: list[str], path: Path) -> list[dict[str, str]]:
    """The rows of `seeds` (all rows without). A seed fixes a run's training rows and eval questions, so when
    the configs judged ran on different seeds (a run resumed with more), only a common set pairs them."""
    if not seeds:
        return rows
    missing = sorted(set(seeds) - {r["seed"] for r in rows})
    if missing:
        raise SystemExit(f"no rows of seed(s) {', '.join(missing)} in {path}: check --seeds")
    return [r for r in rows if r["seed"] in seeds]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path, help="the suite run's raw CSV")
    ap.add_argument("--config", default="default", help="the chosen config, judged")
    ap.add_argument("--oracle", default="oracle-default", help="its evidence oracle")
    ap.add_argument(
        "--equal-time", nargs="+", default=[], help="FORM=dense@N: dense LoRA at the config's GPU time"
    )
    ap.add_argument("--eval-len", type=int, default=16384)
    ap.add_argument(
        "--seeds",
        nargs="+",
        default=[],
        help="judge on these seeds only: configs run on other seeds compare on the same data and questions",
    )
    ap.add_argument(
        "--speed", type=Path, nargs="*", default=[], help="the e2e CSVs with liger-exact and --step"
    )
    ap.add_argument("--commit", default="", help="the speed run's commit (a prefix); a spec's #COMMIT wins")
    ap.add_argument("--step", nargs="*", default=[], help="FORM=BENCH (plot_suite_frontier.py's spec)")
    ap.add_argument("--step-len", type=int, default=32768)
    ap.add_argument("--out", type=Path, help="default: <csv stem>_targets.csv beside the CSV")
    args = ap.parse_args(argv)
    if not args.csv.is_file():
        raise SystemExit(f"no suite CSV at {args.csv}: pass the raw CSV suite.py wrote")
    if args.step and not args.speed:
        raise SystemExit("--step needs --speed, the e2e CSVs its rows are in")
    rows = _seeds(load(args.csv), args.seeds, args.csv)
    verdicts = judge(rows, args.config, args.oracle, _pairs(args.equal_time, "--equal-time"), args.eval_len)
    if not verdicts:
        raise SystemExit(
            f"{args.config} and dense are not both in {args.csv} at {args.eval_len}: check --config"
        )
    speed = [row for path in args.speed for row in load(path)]
    if args.step:
        verdicts += judge_step(speed, _pairs(args.step, "--step"), args.commit, args.config, args.step_len)
    out = args.out or args.csv.with_name(f"{args.csv.stem}_targets.csv")
    # provenance: the runs each verdict reads (the suite's commits, or the speed run's), and this command
    suite_commits = " ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    suite_gpus = ", ".join(dict.fromkeys(r.get("gpu") or "?" for r in rows))
    speed_gpus = ", ".join(
        dict.fromkeys(r.get("gpu") or "?" for r in speed if r["commit"].startswith(args.commit))
    )
    command = shlex.join(
        ["python", "benchmarks/quality/suite_targets.py", *(argv if argv is not None else sys.argv[1:])]
    )
    written = [
        {
            **asdict(v),
            "commit": args.commit if v.target == "step" else suite_commits,
            "gpu": speed_gpus if v.target == "step" else suite_gpus,
            "command": command,
        }
        for v in verdicts
    ]
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(written[0]))
        w.writeheader()
        w.writerows(written)
    print(targets_table(load(out)))
    for line in unjudged(verdicts, {r["form"] for r in rows}, args):
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
