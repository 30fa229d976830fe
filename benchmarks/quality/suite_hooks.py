"""The suite runner's hooks into a training job (docs/suite.md): the evidence oracle, and the share of evidence
blocks each sparse layer keeps while it trains, written into the job's rows as `kept_evidence`/`kept_filler`."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def evidence_hooks(records: list[dict], tokenizer, oracle: bool):
    """Inside: `finetune` measures the evidence each sparse layer keeps (the `KeptMeter` yielded) and, with
    `oracle`, hands each training row's evidence mask to lemo's selection.

    `lemo.train.loop` calls `apply(model, sparsity, ...)` once the model is final (LoRA on); wrapping that
    name here, in this worker process only, installs the hooks there without a parameter in the library.
    """
    import lemo.train.loop as loop
    from lemo.eval.evidence import EvidenceTable, KeptMeter, install_evidence_hook
    from lemo.sparsity.state import SparsityState

    if oracle and "evidence_mask" not in SparsityState.__dataclass_fields__:
        raise SystemExit("this lemo has no SparsityState.evidence_mask: the oracle config cannot run here.")
    table = EvidenceTable(records, tokenizer)
    meter = KeptMeter(table)
    original = loop.apply

    def apply_with_evidence(model, *a, **kw):
        out = original(model, *a, **kw)
        if oracle:
            install_evidence_hook(model, table)
        meter.install(model)
        return out

    loop.apply = apply_with_evidence
    try:
        yield meter
    finally:
        loop.apply = original


def kept_rows(kept: dict[str, float], seq_len: int) -> list[dict]:
    """The training's mean share of evidence and of filler blocks kept per sparse layer, as result rows."""
    return [
        dict(metric=m, family="-", eval_len=seq_len, value=kept[m], n=kept["forwards"])
        for m in ("kept_evidence", "kept_filler")
        if m in kept
    ]
