"""What the plain-text query probes share (query_ngram_probe.py, query_far_probe.py): the library's query rule set
for one probe rule, and the measure, forward supervision's evidence and filler shares on plain-text rows."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterator
from pathlib import Path

from suite_bias import measure  # the same rows, masks and tallies as the selection-bias table

import lemo.sparsity.selection as selection
import lemo.sparsity.supervision as supervision


@contextlib.contextmanager
def query_rule(
    read: int, considered: int, far_tokens: int | None = None, repeats: Callable | None = None
) -> Iterator:
    """The scorer reads `read` positions per segment, chosen from `considered` plain-text candidates spread evenly
    (`farthest` keeps those attending farthest back: a no-op when considered == read), candidates from `repeats`
    (default: the library's far-repeat rule). Everything is restored on exit."""
    names = [(selection, "MAX_QUERIES"), (selection, "FAR_CANDIDATES"), (supervision, "MAX_QUERIES"),
             (supervision, "FAR_CANDIDATES"), (supervision, "FAR_TOKENS"), (supervision, "repeat_positions")]  # fmt: skip
    saved = [getattr(m, n) for m, n in names]
    selection.MAX_QUERIES = supervision.MAX_QUERIES = read
    selection.FAR_CANDIDATES = supervision.FAR_CANDIDATES = considered
    supervision.FAR_TOKENS = supervision.FAR_TOKENS if far_tokens is None else far_tokens
    supervision.repeat_positions = repeats or supervision.repeat_positions
    try:
        yield
    finally:
        for (m, n), v in zip(names, saved):
            setattr(m, n, v)


def plain_text_shares(model, records: list[dict], tok, device, keep: float) -> tuple[float, float]:
    """Forward supervision (keep `keep`, one shared selection) on the rows' plain-text form: the shares of evidence
    and of filler blocks kept, each the mean over the sparse layers."""
    rows = [
        r for r in measure(model, records, tok, device, keep, ["forward: supervision"]) if r["form"] == "text"
    ]
    return sum(r["kept_evidence"] for r in rows) / len(rows), sum(r["kept_filler"] for r in rows) / len(rows)


def write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def add_probe_args(ap, rules: list[str], out: str) -> None:
    """The probes' shared flags: rows, lengths, keep ratio, which rules, and the CSV."""
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--rules", nargs="+", choices=rules, default=rules)
    ap.add_argument("--out", type=Path, default=Path(out))


def probe_model():
    """SmolLM2 with YaRN x2 in training mode (selection runs only there), on the GPU in bf16 if there is one:
    (model, tokenizer, device)."""
    import torch

    from lemo.assets import smollm2_dir
    from lemo.integrations.transformers.loading import load_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    return model.train(), tok, device


def run_rules(
    args, preset: str, rule_of: Callable[[str], contextlib.AbstractContextManager], **extra
) -> list[dict]:
    """Every (length, rule) of a probe: the suite's rows of `preset` (held-out seed 99) in plain-text form, the
    shares kept under `rule_of(name)`, printed and returned as rows (with `extra` columns)."""
    from lemo.assets import austen_split
    from lemo.config import SuiteConfig
    from lemo.eval.suite_rows import training_rows

    model, tok, device = probe_model()
    train, _ = austen_split()
    out = []
    for seq_len in args.seq_len:
        records = training_rows(train, tok, seq_len, args.rows, seed=99, cfg=SuiteConfig.from_preset(preset))
        for name in args.rules:
            with rule_of(name):
                ev, fi = plain_text_shares(model, records, tok, device, args.keep_ratio)
            out.append({"rule": name, "seq_len": seq_len, **extra, "kept_evidence": ev, "kept_filler": fi})
            print(f"{seq_len:>6} {name:50s} evidence {ev:.2f} filler {fi:.2f}", flush=True)
    return out
