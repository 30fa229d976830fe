"""A retrieval task that dense training learns must also be learned with lemo's default selection.

The task: filler tokens, one value token somewhere in the first half, and a query token late in the row (never
in the always-kept last block) whose next token, the only supervised one, is that value. The model has to attend
from the query back to the value: the capability that elimination broke when the oracle dropped the supervised
blocks (docs/capability.md).
"""

import pytest
import torch

import lemo
from lemo.testing import tiny_model

V, T, BS, QUERY = 64, 256, 16, 2
FILLER, VALUES = (8, 48), (48, 64)
STEPS, LR = 300, 3e-3


def batch(gen: torch.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.randint(*FILLER, (size, T), generator=gen)  # [B, T]
    values = torch.randint(*VALUES, (size,), generator=gen)  # [B]
    where = torch.randint(4, T // 2, (size,), generator=gen)  # [B] the value's position
    query = torch.randint(T - 5 * BS, T - 2 * BS, (size,), generator=gen)  # [B] the query's position
    rows = torch.arange(size)
    ids[rows, where] = values
    ids[rows, query] = QUERY
    ids[rows, query + 1] = values
    labels = torch.full_like(ids, -100)  # [B, T] only the answer is supervised
    labels[rows, query + 1] = values
    return ids, labels, values, query


def train_and_score(config: lemo.SparsityConfig | None) -> float:
    model = tiny_model("llama", layers=4, hidden=64, heads=4, kv_heads=2, vocab=V, seed=0).train()
    if config is not None:
        lemo.apply(model, config)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # the random selection draws from torch's default generator
    for _ in range(STEPS):
        ids, labels, _, _ = batch(gen, 4)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    ids, _, values, query = batch(torch.Generator().manual_seed(99), 128)
    model.eval()  # evaluation is dense, as after any lemo fine-tune
    with torch.no_grad():
        predicted = model(input_ids=ids).logits[torch.arange(128), query].argmax(-1)  # [128]
    return float((predicted == values).float().mean())


LEARNED = 0.6  # about ten times chance (1 in 16 values)


@pytest.mark.slow
def test_the_default_selection_learns_what_dense_training_learns():
    dense = train_and_score(None)
    assert dense >= LEARNED, f"the task is meant to be learnable in {STEPS} steps; dense reached {dense:.2f}"
    default = lemo.SparsityConfig(block_size=BS)  # the library default, at this test's block size
    assert default.label_priority and default.random_fraction == 1.0 and default.keep_ratio == 0.6
    sparse = train_and_score(default)
    assert sparse >= LEARNED, f"lemo's default reached {sparse:.2f} against dense {dense:.2f}"
    # The task catches a selection that drops the supervision: without label priority the answer's block is
    # eliminated in most rows, and with the loss on kept positions those rows teach nothing.
    dropping = train_and_score(lemo.SparsityConfig(block_size=BS, label_priority=False))
    assert dropping < LEARNED, f"random blocks without label priority reached {dropping:.2f}"
