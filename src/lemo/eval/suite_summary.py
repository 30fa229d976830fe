"""The capability suite's summary: mean and standard error over seeds, the suite mean, and ties.

Raw rows (one per config, form, seed, metric, family, eval length) become one row per config, form, metric,
family and length: the mean over seeds and its standard error (sample standard deviation / sqrt(seeds)). The
family "suite" is the mean over families, taken per seed first, so its error is the seeds' spread of the suite
score. Each row is compared with the reference config (dense LoRA) of the same form, metric, family and
length, on the seeds both ran (a seed fixes the training rows and the questions, and a resumed run may hold more
seeds of one config than of another): a difference under 2 standard errors of the difference
(sqrt(se^2 + se_ref^2), each over those seeds) is a "tie".
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SUITE = "suite"
TIE_SE = 2.0
SUMMARY_FIELDS = [
    "config", "form", "metric", "family", "eval_len", "mean", "se", "seeds", "reference", "diff", "diff_se",
    "verdict",
]  # fmt: skip


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean); the error is NaN with one value (it cannot be estimated)."""
    if not values:
        raise ValueError("mean_se of no values")
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def verdict(diff: float, diff_se: float, tie_se: float = TIE_SE) -> str:
    """ "tie" when |diff| < tie_se x diff_se, else "higher" or "lower"; "n/a" without an error estimate."""
    if math.isnan(diff_se):
        return "n/a"
    if abs(diff) < tie_se * diff_se or diff == 0:
        return "tie"
    return "higher" if diff > 0 else "lower"


def _suite_rows(rows: Iterable[Mapping[str, Any]], families: Sequence[str]) -> list[dict[str, Any]]:
    """Per (config, form, seed, metric, length): the mean over `families`, where every family is present."""
    per: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["family"] in families:
            key = (r["config"], r["form"], r["seed"], r["metric"], r["eval_len"])
            per[key][r["family"]] = float(r["value"])
    out = []
    for (config, form, seed, metric, length), vals in per.items():
        if set(vals) == set(families):
            value = statistics.fmean(vals.values())
            out.append(dict(config=config, form=form, seed=seed, metric=metric, eval_len=length, value=value))
            out[-1]["family"] = SUITE
    return out


def summarize(
    rows: Sequence[Mapping[str, Any]],
    families: Sequence[str],
    reference: str = "dense",
    tie_se: float = TIE_SE,
) -> list[dict[str, Any]]:
    """Summary rows (`SUMMARY_FIELDS`) of raw rows with config, form, seed, metric, family, eval_len, value.

    `families` are the suite's families: the "suite" row of a seed needs all of them. Metrics without a
    family (perplexity) keep theirs as given.
    """
    scored = [r for r in rows if r["family"] in families]
    everything = [*rows, *_suite_rows(scored, families)]
    cells: dict[tuple, list[tuple[str, float]]] = defaultdict(list)  # key -> (seed, value) per row
    for r in everything:
        key = (r["config"], r["form"], r["metric"], r["family"], str(r["eval_len"]))
        cells[key].append((str(r["seed"]), float(r["value"])))
    out = []
    for key, values in sorted(cells.items()):
        config, form, metric, family, length = key
        mean, se = mean_se([v for _, v in values])
        row = dict(config=config, form=form, metric=metric, family=family, eval_len=length, mean=mean, se=se)
        row.update(seeds=len(values), reference=reference)
        ref = cells.get((reference, form, metric, family, length))
        if ref is None or config == reference:
            row.update(diff="", diff_se="", verdict="reference" if config == reference else "n/a")
        else:
            diff, diff_se = _paired_diff(values, ref)
            row.update(diff=diff, diff_se=diff_se, verdict=verdict(diff, diff_se, tie_se))
        out.append(row)
    return out


def _paired_diff(values: list[tuple[str, float]], ref: list[tuple[str, float]]) -> tuple[float, float]:
    """(config's mean - the reference's, the difference's standard error), both over the seeds the two share;
    NaN with none shared."""
    common = {s for s, _ in values} & {s for s, _ in ref}
    if not common:
        return math.nan, math.nan
    (a, se_a), (b, se_b) = (mean_se([v for s, v in vals if s in common]) for vals in (values, ref))
    return a - b, math.sqrt(se_a**2 + se_b**2)
