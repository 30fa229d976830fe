"""How often each selector keeps the blocks that hold the evidence, on the capability suite's training rows.

The suite's generator knows which prompt spans every answer needs (`record["evidence"]`), so a selector can be
judged without training: per sparse layer, the share of evidence blocks it keeps against the share of the other
unlabelled blocks (filler). Random selection keeps both at the keep ratio; a selector that finds what the loss
depends on keeps evidence blocks more often. Forward passes (training mode, no gradient), on the untrained
model or on an adapter (`--adapter`, e.g. one the suite trained: the signal must hold under training too); the
gradient scorer chooses in the backward pass, so its selectors run one backward per row (the weights frozen,
the gradient taken to the input embeddings only: the selection reads dL/d layer output, which needs no weight
gradient).

    python benchmarks/quality/suite_bias.py --rows 4 --seq-len 16384 --out benchmarks/results/suite_bias.csv
    python benchmarks/quality/suite_bias.py --rows 2 --seq-len 4096 --suite '{"preset": "v1"}' \
        --out benchmarks/results/suite_bias_gradient_cpu.csv        # the CPU table (suite_bias_cpu.csv's rows)

`--by-family` splits the evidence by the family whose questions need it (`record["evidence_by_family"]`): one
row per selector, form, layer and family, and family "all" for the pooled evidence (the rows without the flag).
A block holding evidence of two families counts for both. The selector "forward: evidence oracle" (named only
with --selectors) hands the row's evidence mask to the selection, as the suite's oracle-default job does.
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from common import provenance  # benchmarks/quality/common.py, beside this script

import lemo
import lemo.sparsity.backward as backward_elimination
from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.evidence import record_evidence
from lemo.eval.suite_rows import text_form, training_rows
from lemo.integrations.peft import load_adapter
from lemo.integrations.transformers.loading import load_model
from lemo.integrations.transformers.patch import sparsity_state
from lemo.ops import blocks_with_any

# Not a SparsityConfig field: the gradient scorer's block reduction, set for the one selector that names it.
REDUCE = "gradient_reduce"
# Not a SparsityConfig field either: hand the row's evidence mask to the selection (suite_jobs' evidence oracle).
ORACLE = "evidence_oracle"
BWD = {"elimination": "backward"}
# name: SparsityConfig fields. Keep 0.6 everywhere, the default's sparse layers ("auto").
SELECTORS: dict[str, dict] = {
    "random + labels": {**BWD, "random_fraction": 1.0},
    "column sums (paper's oracle)": {**BWD, "scorer": "oracle", "random_fraction": 0.0},
    "supervision": {**BWD, "scorer": "supervision", "random_fraction": 0.0},
    "supervision + 0.25 random": {**BWD, "scorer": "supervision", "random_fraction": 0.25},
    "gradient": {**BWD, "scorer": "gradient", "random_fraction": 0.0},
    "gradient + 0.25 random": {**BWD, "scorer": "gradient", "random_fraction": 0.25},
    # the other block reduction of the per-row gradient norms (lemo.sparsity.backward.GRADIENT_REDUCE)
    "gradient, block sum": {**BWD, "scorer": "gradient", "random_fraction": 0.0, REDUCE: "sum"},
    # forward elimination (the fast mode: 0.80x Liger exact's step), one selection shared by the sparse layers,
    # made at the first of them: random blocks (the default until e099606, which these rows measured under the
    # name "forward: random + labels (default)"; spelled out, since {} now means the supervision default), and
    # the supervision scorer from that layer's q and k
    "forward: random + labels": {"random_fraction": 1.0},
    "forward: supervision": {"scorer": "supervision", "random_fraction": 0.0},
    # SparsityConfig()'s selector: the default since e099606
    "forward: supervision + 0.25 random": {"scorer": "supervision", "random_fraction": 0.25},
    # the default with each block ranked by the best score within one block on either side (score_dilation)
    "forward: supervision + 0.25 random, dilation 1": {
        "scorer": "supervision",
        "random_fraction": 0.25,
        "score_dilation": 1,
    },
    # the default with the context blocks the labels copy 3-grams from kept after the labelled ones (copy_ngram)
    "forward: supervision + 0.25 random, copy 3": {
        "scorer": "supervision",
        "random_fraction": 0.25,
        "copy_ngram": 3,
        "copy_plain_text": True,  # as measured (44c3d6d), before the plain-text tier became an option
    },
    # the copy tier with both ends of each far repeat in plain text (copy_repeats)
    "forward: supervision + 0.25 random, copy 3 + repeats": {
        "scorer": "supervision",
        "random_fraction": 0.25,
        "copy_ngram": 3,
        "copy_plain_text": True,
        "copy_repeats": True,
    },
    # the default told where the evidence is (suite_jobs' "oracle-default"): it keeps the evidence blocks first,
    # so its kept_evidence is 1.0 wherever the evidence fits the budget; run only when named
    "forward: evidence oracle": {ORACLE: True},
}
# measured before copy_ngram=3 became SparsityConfig()'s (2026-12-06): each keeps the selection it was measured
# with, no copy tier unless it names one
for _fields in SELECTORS.values():
    _fields.setdefault("copy_ngram", 0)
DEFAULT_SELECTORS = [name for name, fields in SELECTORS.items() if not fields.get(ORACLE)]
ALL = "all"  # the family of the pooled evidence rows (--by-family)
FIELDS = ["selector", "form", "layer", "kept_evidence", "kept_filler", "evidence_blocks", "filler_blocks",
          "rows", "seq_len", "keep_ratio", "adapter", "suite", "gpu", "torch", "transformers", "commit", "timestamp",
          "command"]  # fmt: skip


class RowMasks(NamedTuple):
    """One row in one form: its ids and the masks the tally reads. (A NamedTuple, not a dataclass: the tests
    load this script without registering it as a module, which a dataclass's annotations need.)"""

    ids: list[int]
    n_prompt: int
    evidence: torch.Tensor  # [T] bool: tokens of any family's evidence (what the oracle is handed)
    # ALL, and with by_family each family: [nb] bool, the blocks holding its evidence
    blocks: dict[str, torch.Tensor]
    filler: torch.Tensor  # [nb] bool: blocks of neither evidence nor the question/answer tail


def _form(record: dict, form: str) -> dict:
    return record if form == "sup" else text_form(record)


def block_masks(record: dict, form: str, tokenizer, block: int, by_family: bool = False) -> RowMasks:
    """The row of `record` in `form` ("sup" or "text") and its evidence and filler blocks; with `by_family` also
    each family's evidence blocks, from that family's own spans (not the merged ones, which may join a
    statement to the recall quote beside it)."""
    ids, evidence = record_evidence(_form(record, form), tokenizer)
    n_prompt = len(tokenizer.encode(record["prompt"], add_special_tokens=False, verbose=False))
    tail = torch.zeros(len(ids), dtype=torch.bool)
    tail[n_prompt:] = True
    ev = blocks_with_any(evidence, block)  # [nb]
    blocks = {ALL: ev}
    for family, spans in record["evidence_by_family"].items() if by_family else ():
        # the same tokenization as the pooled mask (record_evidence), with only this family's spans marked
        _, mask = record_evidence(_form({**record, "evidence": spans}, form), tokenizer)
        blocks[family] = blocks_with_any(mask, block)  # [nb]
    return RowMasks(ids, n_prompt, evidence, blocks, ~(ev | blocks_with_any(tail, block)))


def measure(
    model, records: list[dict], tokenizer, device, keep: float, names: list[str], by_family: bool = False
) -> list[dict]:
    """Per selector, form and layer (and with `by_family` per family): kept share of evidence and of filler
    blocks, pooled over the rows."""
    out = []
    library_reduce = backward_elimination.GRADIENT_REDUCE
    for name in names:
        fields = dict(SELECTORS[name])
        reduce = fields.pop(REDUCE, library_reduce)
        oracle = fields.pop(ORACLE, False)
        torch.manual_seed(0)  # random shares draw from torch's generator: the same draws on every run
        lemo.apply(model, lemo.SparsityConfig(keep_ratio=keep, **fields))
        backward_elimination.GRADIENT_REDUCE = reduce
        for form in ("sup", "text"):
            tally: dict[tuple[int, str], list[int]] = {}
            for rec in records:
                row = block_masks(rec, form, tokenizer, 64, by_family)
                x = torch.tensor(row.ids, device=device)[None]  # [1, T]
                labels = x.clone()
                if form == "sup":
                    labels[:, : row.n_prompt] = -100  # prompt/completion: the answers alone carry labels
                if oracle:  # read by the next forward's selection, cleared at its end
                    sparsity_state(model).evidence_mask = row.evidence[None].to(device)  # [1, T]
                _select(model, x, labels, fields.get("scorer") == "gradient")
                _count(tally, lemo.stats(model), row)
            out += _rows(name, form, tally, by_family)
        backward_elimination.GRADIENT_REDUCE = library_reduce
        lemo.remove(model)
    return out


def _count(tally: dict[tuple[int, str], list[int]], stats: dict, row: RowMasks) -> None:
    """Add one row's kept blocks, per layer, to `tally`: (layer, family) -> [kept evidence, evidence, kept
    filler, filler] blocks, the evidence of that family (ALL: of any)."""
    for layer, s in stats.items():
        kept = torch.zeros(row.filler.numel(), dtype=torch.bool)  # [nb]
        kept[torch.tensor(s["blocks"][0], dtype=torch.long)] = True
        for family, ev in row.blocks.items():
            t = tally.setdefault((layer, family), [0, 0, 0, 0])
            t[0] += int((kept & ev).sum())
            t[1] += int(ev.sum())
            t[2] += int((kept & row.filler).sum())
            t[3] += int(row.filler.sum())


def _rows(name: str, form: str, tally: dict[tuple[int, str], list[int]], by_family: bool) -> list[dict]:
    """The tally as result rows, layer by layer (and family by family: "all" first, then as the rows list them);
    without `by_family`, exactly the rows the script wrote before it had the flag."""
    # ALL first (block_masks puts it first), then the families in the order the rows listed them
    rank = {f: i for i, f in enumerate(dict.fromkeys(f for _, f in tally))}
    out = []
    for (layer, family), (ke, ne, kf, nf) in sorted(tally.items(), key=lambda kv: (kv[0][0], rank[kv[0][1]])):
        row = {"selector": name, "form": form, "layer": layer, "kept_evidence": ke / max(ne, 1),
               "kept_filler": kf / max(nf, 1), "evidence_blocks": ne, "filler_blocks": nf}  # fmt: skip
        out.append({**row, "family": family} if by_family else row)
    return out


def _select(model, x: torch.Tensor, labels: torch.Tensor, in_backward: bool) -> None:
    """One training-mode pass over the row x [1, T], so every sparse layer selects: the forward alone, or with
    `in_backward` (the gradient scorer) the forward and a backward to the input embeddings."""
    if not in_backward:
        with torch.no_grad():
            model(input_ids=x, labels=labels)
        return
    model(input_ids=x, labels=labels).loss.backward()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--adapter", type=Path, default=None)
    ap.add_argument(
        "--suite", default="", help='SuiteConfig knobs as JSON over a preset, e.g. \'{"preset": "v1"}\''
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/suite_bias.csv"))
    ap.add_argument("--selectors", nargs="+", choices=list(SELECTORS), default=DEFAULT_SELECTORS,
                    help="default: all but the evidence oracle")  # fmt: skip
    ap.add_argument(
        "--by-family",
        action="store_true",
        help="one row per family too (column family; 'all' is the pooled evidence): "
        "the share of each family's evidence blocks kept",
    )
    args = ap.parse_args(argv)
    env = provenance(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    if args.adapter is not None:
        model = load_adapter(model, args.adapter).to(device)
    model.train()  # selection runs in training mode
    # No weight gradient is needed (the gradient scorer reads dL/d layer output): freeze the weights, and let the
    # backward start from the input embeddings' output so it reaches every layer.
    for p in model.parameters():
        p.requires_grad_(False)
    model.enable_input_require_grads()
    train, _ = austen_split()
    knobs = json.loads(args.suite or "{}")
    suite = SuiteConfig.from_preset(knobs.pop("preset", "v2"), **knobs)
    records = training_rows(train, tok, args.seq_len, args.rows, seed=99, cfg=suite)
    rows = measure(model, records, tok, device, args.keep_ratio, args.selectors, args.by_family)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        fields = _fields(args.by_family)
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "rows": args.rows, "seq_len": args.seq_len, "keep_ratio": args.keep_ratio,
                        "adapter": str(args.adapter or ""), "suite": json.dumps(asdict(suite), sort_keys=True),
                        **env})  # fmt: skip
    for r in rows:
        family = f" {r['family']:10s}" if args.by_family else ""
        print(f"{r['selector']:30s} {r['form']:4s} L{r['layer']:<3d}{family} evidence {r['kept_evidence']:.2f} "
              f"filler {r['kept_filler']:.2f}")  # fmt: skip
    return 0


def _fields(by_family: bool) -> list[str]:
    """The CSV columns: FIELDS, with the family after the layer under --by-family."""
    if not by_family:
        return FIELDS
    at = FIELDS.index("layer") + 1
    return [*FIELDS[:at], "family", *FIELDS[at:]]


if __name__ == "__main__":
    raise SystemExit(main())
