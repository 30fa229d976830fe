"""SuiteConfig.train_families: a family held out of training whole (its facts, statements and questions reach no
training row) while eval still asks about it, so its score is what training on the others carries over."""

from __future__ import annotations

import pytest

from lemo.config import SuiteConfig
from lemo.eval.suite_rows import eval_samples, training_rows

SEQ = 4096
OTHERS = ("multivalue", "vartrack", "kv", "recall", "count")
# every multikey wording's statement, training and held out: the family's words (suite_phrasings.json)
MULTIKEY_MARKS = ("The secret code of", "locker number", "holds ticket", "the badge of")


@pytest.fixture(scope="module")
def train_text(austen_dir) -> str:
    return (austen_dir / "prideprejudice.txt").read_text(encoding="utf-8")[:120_000]


def test_a_held_out_family_reaches_no_training_row_and_eval_still_asks_it(train_text, held_text, tok):
    cfg = SuiteConfig.from_preset("v14", train_families=OTHERS)
    assert cfg.held_out_families() == ("multikey",)
    rows = training_rows([train_text], tok, SEQ, 2, seed=0, cfg=cfg)
    for r in rows:
        assert r["families"] == sorted(OTHERS) and "multikey" not in r["evidence_by_family"]
        assert not any(mark in r["prompt"] + r["completion"] for mark in MULTIKEY_MARKS)
    whole = training_rows([train_text], tok, SEQ, 2, seed=0, cfg=SuiteConfig.from_preset("v14"))
    assert any(mark in r["prompt"] for r in whole for mark in MULTIKEY_MARKS)  # the marks do find multikey
    # the other families' rows are those of a suite of those families alone
    assert rows == training_rows(
        [train_text], tok, SEQ, 2, seed=0, cfg=SuiteConfig.from_preset("v14", families=OTHERS)
    )
    samples = eval_samples(held_text, tok, [2048], 2, cfg=cfg)
    assert {s.task for s in samples} == {"multikey", *OTHERS}
    held = [s for s in samples if s.task == "multikey"]
    assert held and all(s.length == 2048 for s in held)


def test_train_families_must_be_some_of_the_suites():
    assert SuiteConfig().held_out_families() == () and SuiteConfig().for_training() == SuiteConfig()
    with pytest.raises(ValueError, match=r"train_families \['nope'\]: name some of families"):
        SuiteConfig(train_families=("nope",))
    with pytest.raises(ValueError, match=r"train_families \[\]"):
        SuiteConfig(train_families=())
    with pytest.raises(ValueError, match="name some of families"):  # narrowed families leave it outside
        SuiteConfig(families=("kv",), train_families=("kv", "count"))
    # a JSON round trip (suite.py's --suite) gives the same config
    assert SuiteConfig.from_dict({"train_families": ["kv", "count"]}).train_families == ("kv", "count")
