"""Probe: two other supervision scores for prompt/completion rows, per family (issue 19, suite v7's recall gap).

On suite v7 the default lost recall to dense LoRA (0.03 against 0.28 exact match), and on the CPU it kept about half
of recall's evidence blocks (suite_bias_family_v7_cpu_rows8.csv). Two changes to the score, each measured like
`suite_bias.py --by-family` (it runs that script's main with the change patched in; forward supervision + 0.25
random, keep 0.5, v7 rows):
- `union W`: the labels' score plus W times the score of plain text's far-repeat queries among the unlabelled
  positions (a question's quote and key tokens repeat the context far back), each normalised to sum 1;
- `votes K`: each query row gives one vote to each of its K highest-attention blocks (max over the block's tokens,
  summed over heads) instead of adding the attention, so a question read by few answer tokens counts as much as
  one read by many;
- `dilate W`: each block's score is the max over W blocks on either side, so the block beside one the labels
  read is ranked with it (a quote and the passage after it);
- `ngram N`: the context blocks holding an N-gram that the labelled part repeats (at most 4 times in the row)
  rank first, by the labels' attention among themselves: a lexical copy-source marker, no attention needed.

    python benchmarks/quality/query_score_probe.py union 1.0 --by-family --rows 8 --seq-len 8192 --keep-ratio 0.5 \\
        --suite "$(cat benchmarks/results/suite_v7_sizing_chosen.json)" \\
        --selectors "forward: supervision + 0.25 random" --out benchmarks/results/query_score_union_v7_cpu.csv
"""

from __future__ import annotations

import sys

import suite_bias  # beside this script
import torch

import lemo.integrations.transformers.loss as loss
import lemo.sparsity.selection as selection
import lemo.sparsity.supervision as supervision
from lemo.ops import blocks_with_any


def patch_union(weight: float) -> None:
    """Labels' score + `weight` x far-repeat score (one-row batches: the probe's rows are single segments)."""
    stash: dict[str, torch.Tensor | None] = {}
    query_mask, scores = loss.query_mask, selection.supervision_scores

    def mask(shift_labels, input_ids):
        out, far = query_mask(shift_labels, input_ids)
        labelled = out is not None and not far and input_ids is not None
        stash["rep"] = supervision.repeat_positions(input_ids) & ~out if labelled else None  # [B, T]
        return out, far

    def score(parts, x, queries, block_size, rope=None, far=False):
        s1 = scores(parts, x, queries, block_size, rope, far)  # [nb]
        rep = stash.get("rep")
        if far or rep is None or rep.shape[0] != 1 or rep.shape[1] != x.shape[0]:
            return s1
        index = rep[0].nonzero().flatten().to(x.device)  # [n_rep]
        if index.numel() == 0:
            return s1
        s2 = scores(parts, x, index, block_size, rope, True)  # [nb]
        return s1 / s1.sum().clamp_min(1e-9) + weight * s2 / s2.sum().clamp_min(1e-9)

    loss.query_mask, selection.supervision_scores = mask, score


def patch_votes(top: int) -> None:
    """Each query row votes for its `top` blocks."""

    @torch.no_grad()
    def received(q, k, q_index, scale, block_size):
        n, h_kv = k.shape[0], k.shape[1]
        group, nb = q.shape[1] // h_kv, -(-n // block_size)
        scores = torch.zeros(nb, dtype=torch.float32, device=k.device)  # [nb]
        for _, c, p in supervision._probabilities(q, k, q_index, scale):  # p: [H_kv, c*g, n]
            p = torch.nn.functional.pad(p, (0, nb * block_size - n))
            per = p.view(h_kv, c, group, nb, block_size).amax(dim=-1).sum(dim=(0, 2))  # [c, nb]
            best = per.topk(min(top, nb), dim=-1).indices  # [c, top]
            scores.scatter_add_(0, best.flatten(), torch.ones(best.numel(), device=k.device))
        return scores

    supervision.attention_received = received


def patch_dilate(width: int) -> None:
    """Each block's score is the max over the `width` blocks on either side: a recall answer needs the quote and
    the passage after it, and the labels' attention finds one of them (the passage, by induction) far more than
    the other."""
    scores = selection.supervision_scores

    def score(parts, x, queries, block_size, rope=None, far=False):
        s = scores(parts, x, queries, block_size, rope, far)  # [nb]
        pooled = torch.nn.functional.max_pool1d(s[None, None].float(), 2 * width + 1, 1, width)  # [1, 1, nb]
        return pooled.flatten().to(s.dtype)

    selection.supervision_scores = score


def patch_ngram(n: int, max_repeats: int = 4) -> None:
    """Prompt/completion rows: the context blocks holding an n-gram that the labelled part repeats (a quote, a
    key, a name the questions and answers copy) rank before every other scored block, by the labels' attention
    among themselves; n-grams seen more than `max_repeats` times in the row ("of the") do not count. Plain text
    (every position labelled) is unchanged."""
    stash: dict[str, torch.Tensor | None] = {}
    query_mask, scores = loss.query_mask, selection.supervision_scores

    def mask(shift_labels, input_ids):
        out, far = query_mask(shift_labels, input_ids)
        stash["match"] = None
        if out is not None and not far and input_ids is not None and input_ids.shape[0] == 1:
            stash["match"] = supervision.copy_sources(input_ids, out, n, max_repeats)[0]  # [T]
        return out, far

    def score(parts, x, queries, block_size, rope=None, far=False):
        s = scores(parts, x, queries, block_size, rope, far)  # [nb]
        match = stash.get("match")
        if far or match is None or match.shape[0] != x.shape[0]:
            return s
        hit = blocks_with_any(match.to(s.device), block_size)  # [nb]
        return s / s.max().clamp_min(1e-9) + hit.float()

    loss.query_mask, selection.supervision_scores = mask, score


if __name__ == "__main__":
    variant, value, *rest = sys.argv[1:]
    {
        "union": lambda: patch_union(float(value)),
        "votes": lambda: patch_votes(int(value)),
        "dilate": lambda: patch_dilate(int(value)),
        "ngram": lambda: patch_ngram(int(value)),
    }[variant]()
    sys.argv[0] += (
        f" {variant} {value}"  # the rows' command names the variant (common.provenance reads argv[0])
    )
    sys.exit(suite_bias.main(rest))
