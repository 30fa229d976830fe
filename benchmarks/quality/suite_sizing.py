"""The suite's sizing helpers, `suite.py sizing plan|table|choose` (docs/suite.md): the variants of a sizing
file, a table of their summaries, and the knobs that size every family. `gpu_capability.sh sizing` runs them.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from suite_jobs import suite_config  # beside this script

from lemo.config.suite import FAMILIES

SIZING_SEEDS = (0, 1)  # a variant's seeds when the sizing file gives none
SIZING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a variant's name names its files


def sizing_plan(path: Path) -> list[tuple[str, str, list[int]]]:
    """The variants of a sizing file: (name, --suite JSON, seeds), in the file's order.

    The file maps a name to SuiteConfig knobs over a preset (v2 unless "preset" says), plus an optional "seeds"
    list; a key starting with "_" is a note. Every variant is checked here, so a typo fails before any work."""
    plan = []
    for name, entry in json.loads(path.read_text()).items():
        if name.startswith("_"):
            continue
        if not SIZING_NAME.fullmatch(name) or not isinstance(entry, dict):
            raise SystemExit(
                f"{path}: variant {name!r} must be a plain name (letters, digits, _.-) -> {{knobs}}"
            )
        knobs = {k: v for k, v in entry.items() if k != "seeds"}
        seeds = entry.get("seeds", list(SIZING_SEEDS))
        if not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
            raise SystemExit(f"{path}: variant {name!r} has seeds {seeds!r}: give a list of integers >= 0.")
        suite = json.dumps(knobs, sort_keys=True)
        try:
            suite_config(argparse.Namespace(suite=suite))
        except (TypeError, ValueError) as e:  # an unknown knob, or a value SuiteConfig refuses
            raise SystemExit(f"{path}: variant {name!r}: {e}") from e
        plan.append((name, suite, seeds))
    if not plan:
        raise SystemExit(f"{path} lists no variant.")
    return plan


def _cell(row: Mapping[str, str] | None) -> str:
    """ "0.80±.02" (the mean and its standard error over seeds); the error is left out for one seed."""
    if row is None:
        return "-"
    mean, se = float(row["mean"]), float(row["se"] or "nan")
    return f"{mean:.2f}" + ("" if math.isnan(se) else f"±{se:.2f}".replace("0.", "."))


def sizing_table(
    summaries: Mapping[str, Path], length: int, metric: str, config: str = "dense", form: str = "sup"
) -> str:
    """One line per variant (its summary CSV), one column per family and the suite mean: `metric` at
    `length` of `config` in `form`. A variant without results (it failed, or ran out of time) shows "-"."""
    columns = [*FAMILIES, "suite"]
    lines = [f"{metric} @ {length}", f"{'variant':<14}{'seeds':>6}" + "".join(f"{c:>12}" for c in columns)]
    for name, path in summaries.items():
        rows = list(csv.DictReader(path.open())) if path.exists() else []
        cells = {
            r["family"]: r
            for r in rows
            if (r["config"], r["form"], r["metric"], r["eval_len"]) == (config, form, metric, str(length))
        }
        seeds = max((r["seeds"] for r in cells.values()), default="-")
        lines.append(f"{name:<14}{seeds:>6}" + "".join(f"{_cell(cells.get(c)):>12}" for c in columns))
    return "\n".join(lines)


# One wording, families from hardest to easiest: the rungs `sizing choose` mixes.
LADDER = ("D_both", "E_easy", "F_easiest")
GLOBAL_KNOBS = ("families", "train_phrasings", "shared_lead", "held_out_phrasing")
FAMILY_MAPS = ("held_out", "depth_band")  # knobs keyed by family: a family takes its own entry from its rung


def _dense_exact(path: Path, length: int) -> dict[str, float]:
    """family -> dense LoRA's mean exact match at `length` (form sup), from a variant's summary CSV."""
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    cell = ("dense", "sup", "exact_match", str(length))
    return {
        r["family"]: float(r["mean"])
        for r in rows
        if (r["config"], r["form"], r["metric"], r["eval_len"]) == cell
    }


def _pick(scores: Sequence[tuple[str, float]], lo: float, hi: float) -> str:
    """The hardest rung whose score is in [lo, hi]; else the hardest if every rung is above, else the best."""
    inside = [name for name, v in scores if lo <= v <= hi]
    if inside:
        return inside[0]
    if all(v > hi for _, v in scores):
        return scores[0][0]
    return min(scores, key=lambda nv: abs(nv[1] - (lo + hi) / 2))[0]


def choose_knobs(
    results: Path, plan: Path, length: int = 16384, lo: float = 0.4, hi: float = 0.9, ladder=LADDER
) -> tuple[dict, dict[str, str]]:
    """The suite knobs that size every family: per family, the hardest rung of `ladder` (variants sharing one
    wording, hardest first) where dense LoRA's exact match at `length` lies in [lo, hi]. A family's knobs are
    those named after it (kv_pairs -> kv) and its entries of `held_out` and `depth_band`; the wording comes from
    the first rung. A sizing file's "_ladder" list replaces `ladder`. Returns (knobs, family -> rung). A rung without results (failed, out of time) is passed
    over."""
    variants = {name: json.loads(suite) for name, suite, _ in sizing_plan(plan)}
    ladder = json.loads(plan.read_text()).get("_ladder", ladder)  # a sizing file may name its own rungs
    missing = [r for r in ladder if r not in variants]
    if missing:
        raise SystemExit(f"{plan}: the ladder's variants {missing} are not in it.")
    knobs = {k: v for k, v in variants[ladder[0]].items() if k in GLOBAL_KNOBS or k == "preset"}
    scores = {r: _dense_exact(results / f"{r}_summary.csv", length) for r in ladder}
    chosen = {}
    for family in FAMILIES:
        rungs = [(r, scores[r][family]) for r in ladder if family in scores[r]]
        chosen[family] = _pick(rungs, lo, hi) if rungs else ladder[0]
        knobs.update({k: v for k, v in variants[chosen[family]].items() if k.startswith(family + "_")})
        # A per-family entry of a shared knob, from the rung's whole config: a rung that keeps its preset's
        # entry does not spell it, and the knobs' map replaces the preset's whole map.
        rung = suite_config(argparse.Namespace(suite=json.dumps(variants[chosen[family]])))
        for knob in FAMILY_MAPS:
            entries = getattr(rung, knob)
            if family in entries:
                entry = entries[family]
                knobs.setdefault(knob, {})[family] = list(entry) if isinstance(entry, tuple) else entry
    return knobs, chosen


def sizing_main(argv: list[str]) -> int:
    """`sizing plan FILE`: one tab-separated line per variant (name, --suite JSON, seeds), for the shell.
    `sizing table RESULTS`: exact match and answer-token accuracy per variant, family and length, from the
    `<name>_summary.csv` files in RESULTS, in the order of --plan (default: the names' order)."""
    ap = argparse.ArgumentParser(prog="suite.py sizing")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("plan").add_argument("file", type=Path)
    table = sub.add_parser("table")
    table.add_argument("results", type=Path)
    table.add_argument("--plan", type=Path, help="the sizing file: its variants, in its order")
    table.add_argument("--lengths", type=int, nargs="+", default=[16384])
    choose = sub.add_parser("choose", help="print the knobs (JSON) that size every family, from RESULTS")
    choose.add_argument("results", type=Path)
    choose.add_argument("--plan", type=Path, required=True)
    choose.add_argument("--length", type=int, default=16384)
    args = ap.parse_args(argv)
    if args.command == "choose":
        knobs, chosen = choose_knobs(args.results, args.plan, args.length)
        print("sizing: " + ", ".join(f"{f} from {r}" for f, r in chosen.items()), file=sys.stderr)
        print(json.dumps(knobs, sort_keys=True))
        return 0
    if args.command == "plan":
        for name, suite, seeds in sizing_plan(args.file):
            print(name, suite, " ".join(map(str, seeds)), sep="\t")
        return 0
    if args.plan:
        names = [name for name, _, _ in sizing_plan(args.plan)]
    else:
        names = sorted(p.name.removesuffix("_summary.csv") for p in args.results.glob("*_summary.csv"))
    summaries = {n: args.results / f"{n}_summary.csv" for n in names}
    # where the runs wrote them: near and far evidence apart (suite.py's distance_rows, since v9's sizing), and
    # finding a value against copying it (kind_rows, since session 27)
    metrics = ["exact_match", "token_accuracy"] + [m for m in EXTRA_METRICS if _written(summaries, m)]
    for length in args.lengths:
        for metric in metrics:
            print(sizing_table(summaries, length, metric), end="\n\n")
    return 0


EXTRA_METRICS = ("exact_match_near", "exact_match_far", "value_start_accuracy", "value_rest_accuracy")


def _written(summaries: Mapping[str, Path], metric: str) -> bool:
    """Whether any of the summaries holds a row of `metric`."""
    for path in summaries.values():
        if path.exists() and any(r["metric"] == metric for r in csv.DictReader(path.open())):
            return True
    return False
