"""Evidence per family: the training rows' `evidence_by_family` spans (lemo.eval.suite_rows), and
benchmarks/quality/suite_bias.py --by-family, which reads a selector's keep of each family's evidence."""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
from pathlib import Path

import pytest
from tests.eval.conftest import load_script

from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES
from lemo.eval.suite import draw_facts
from lemo.eval.suite_rows import text_form, training_rows

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "suite_bias.py"
# A few facts of every family: at 2048 tokens the evidence fits half the blocks, so an oracle can keep it all.
SMALL = dict(
    multikey_keys=2, multivalue_keys=1, vartrack_chains=1, kv_pairs=3, kv_asked=1, recall_quotes=2, count_keys=2
)  # fmt: skip
SEQ, SEED = 2048, 7


@pytest.fixture(scope="module")
def bias():
    yield from load_script(SCRIPT)


@pytest.fixture(scope="module")
def text(austen_dir) -> str:
    return (austen_dir / "emma.txt").read_text(encoding="utf-8")[:60_000]


@pytest.fixture(scope="module")
def record(text, tok) -> dict:
    return training_rows([text], tok, SEQ, 1, seed=SEED, cfg=SuiteConfig(**SMALL))[0]


def _merged(spans: list[list[int]]) -> list[list[int]]:
    """Spans merged as the generator merges them: overlapping, adjacent or one character apart."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def _inside(at: int, end: int, spans: list[list[int]]) -> bool:
    return any(s <= at and end <= e for s, e in spans)


def test_family_spans_split_the_evidence_exactly(record):
    by_family = record["evidence_by_family"]
    assert sorted(by_family) == record["families"] == sorted(FAMILIES)
    # Together the families' spans are the evidence, span for span, and none is shared by two families.
    assert _merged([sp for spans in by_family.values() for sp in spans]) == record["evidence"]
    flat = sorted((s, e) for spans in by_family.values() for s, e in spans)
    assert all(e0 <= s1 for (_, e0), (s1, _) in itertools.pairwise(flat))
    assert text_form(record)["evidence_by_family"] == by_family


def test_each_familys_spans_are_its_own_facts(record):
    """The statements of every fact lie in their family's spans and those spans hold nothing else; each recall
    span starts with a sentence a question quotes."""
    prompt, by_family = record["prompt"], record["evidence_by_family"]
    # training_row draws its facts first from the row's seed: the same facts again
    facts = draw_facts(random.Random(f"suite/{SEED}/train/0"), SuiteConfig(**SMALL), "train")
    for family in set(FAMILIES) - {"recall"}:
        statements = {s for f in facts if f.family == family for s in f.statements}
        assert statements, family
        for st in statements:
            hits = [m.start() for m in re.finditer(re.escape(st), prompt)]
            assert hits and all(_inside(h, h + len(st), by_family[family]) for h in hits), (family, st)
        for s, e in by_family[family]:
            rest = prompt[s:e]
            for st in statements:
                rest = rest.replace(st, "")
            assert not rest.strip(), (family, prompt[s:e])
    quotes = re.findall(r'"([^"]+)"', record["completion"])
    recall = [" ".join(prompt[s:e].split()) for s, e in by_family["recall"]]
    assert len(recall) == len(quotes) == SMALL["recall_quotes"]
    assert sorted(next(q for q in quotes if r.startswith(q + " ")) for r in recall) == sorted(quotes)


def test_by_family_rows_of_the_evidence_oracle_keep_every_familys_evidence(bias, smollm2, tmp_path):
    out = tmp_path / "bias.csv"
    argv = ["--by-family", "--rows", "1", "--seq-len", str(SEQ), "--keep-ratio", "0.5", "--suite",
            json.dumps(SMALL), "--selectors", "forward: evidence oracle", "--out", str(out)]  # fmt: skip
    assert bias.main(argv) == 0
    with out.open() as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames[:4] == ["selector", "form", "layer", "family"]
    cells = {(r["form"], r["layer"]) for r in rows}
    assert {r["form"] for r in rows} == {"sup", "text"} and len(
        cells
    ) == 2 * 15  # SmolLM2's sparse layers 14-28
    for form, layer in cells:
        mine = {r["family"]: r for r in rows if (r["form"], r["layer"]) == (form, layer)}
        assert sorted(mine) == sorted([bias.ALL, *FAMILIES])
        for family, r in mine.items():
            assert int(r["evidence_blocks"]) > 0 and float(r["kept_evidence"]) == 1.0, (form, layer, family)
            # the budget left after the evidence and the answers goes to some filler, not all of it
            assert 0 < float(r["kept_filler"]) < 0.5


def test_without_the_flag_the_rows_are_the_pooled_ones(bias, record, tiny_model_dir, tok):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).train()
    name = ["forward: supervision + 0.25 random"]
    plain = bias.measure(model, [record], tok, torch.device("cpu"), 0.5, name)
    split = bias.measure(model, [record], tok, torch.device("cpu"), 0.5, name, by_family=True)
    assert plain and all("family" not in r for r in plain)
    assert plain == [{k: v for k, v in r.items() if k != "family"} for r in split if r["family"] == bias.ALL]
    masks = bias.block_masks(record, "sup", tok, 64, by_family=True)
    families = [m for f, m in masks.blocks.items() if f != bias.ALL]
    assert len(families) == len(FAMILIES)
    assert torch.equal(
        torch.stack(families).any(0), masks.blocks[bias.ALL]
    )  # every evidence block has a family
