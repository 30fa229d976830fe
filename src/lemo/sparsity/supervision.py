"""Supervision-conditioned block scores: which key blocks the positions the loss asks about attend to.

The paper's score (column sums of the whole attention map) does not know what the loss depends on, and in the
capability probes it kept the blocks holding the facts no more often than filler (docs/capability.md). Scoring
key blocks by the attention they receive from the *query positions that carry the supervision* ranks those
blocks first (measured on SmolLM2: 0.91-0.97 of fact blocks in the top 60%, against 0.45-0.77 for all queries).

Query positions:
- labelled positions, when labels cover a minority of the row (prompt/completion, chat);
- plain text (every position labelled): positions whose next token continues a bigram seen at least `min_gap`
  tokens earlier and at most `max_repeats` times in the row. They are the positions that copy from far context
  (an induction proxy for the key tokens of LongPPL), cheap to find from the token ids alone. A long row has
  thousands: of up to FAR_CANDIDATES of them, the scorer reads the MAX_QUERIES whose attention puts the most
  mass on keys at least FAR_TOKENS back (`farthest`), the positions that are retrieving rather than reading
  locally. On the suite's plain-text rows at 16K (untrained SmolLM2, CPU probe, 2 rows,
  query_far_probe_cpu.csv) that kept evidence / filler blocks at 0.91 / 0.55, where 512 spread evenly kept
  0.62 / 0.59 (no better than random); at 4K there are fewer than 512 and nothing changes.
"""

from __future__ import annotations

import torch

from lemo.ops import apply_rope
from lemo.sparsity.parts import LayerParts

MAX_QUERIES = 512  # query positions scored per segment; more add cost and little signal
FAR_CANDIDATES = (
    2048  # plain text: candidate positions (spread evenly) the MAX_QUERIES read are chosen from ...
)
FAR_TOKENS = 1024  # ... by their attention mass on keys at least this many rows back
QUERY_CHUNK = 64  # query rows per softmax at most, bounding the [H, chunk, n] fp32 probabilities ...
SCORE_BYTES = 256 * 2**20  # ... to this many bytes at long rows (4 queries per chunk at 512K on Llama-3-8B)


def ngram_ids(row: torch.Tensor, n: int, vocab: int) -> torch.Tensor:
    """[T-n+1] int64: one id per n-gram of the token ids `row` [T] (ids < `vocab`), equal exactly where the
    n-grams are. Each step renumbers the (j+1)-grams densely, so the product stays below T x vocab for any n
    (Llama-3's 128K-token vocabulary overflows int64 at n = 4 without it)."""
    row = row.long()
    m = row.shape[0] - n + 1
    key = row[:m]  # [m]
    for j in range(1, n):
        key = torch.unique(key * vocab + row[j : m + j], return_inverse=True)[1]  # [m] dense (j+1)-gram ids
    return key


def _row_ngrams(ids: torch.Tensor, n: int):
    """Per row b of the token ids [B, T]: (b, inv [T-n+1] which distinct n-gram starts at each position, counts
    [U] how often each occurs in the row). Nothing for rows shorter than n."""
    if n > ids.shape[1]:
        return
    vocab = int(ids.max()) + 1
    for b in range(ids.shape[0]):
        _, inv, counts = torch.unique(ngram_ids(ids[b], n, vocab), return_inverse=True, return_counts=True)
        yield b, inv, counts


def repeat_positions(ids: torch.Tensor, min_gap: int = 256, max_repeats: int = 4, n: int = 2) -> torch.Tensor:
    """[B, T] bool: position t whose n-gram ids[t : t+n] (a bigram by default) occurred before at a position
    <= t - min_gap, and at most `max_repeats` times in its row (frequent ones such as "of the" carry no
    retrieval). Longer n-grams were probed and not adopted (benchmarks/quality/query_ngram_probe.py)."""
    T = ids.shape[1]
    out = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)  # [B, T]
    pos = torch.arange(max(T - n + 1, 0), device=ids.device)  # [T-n+1]
    for b, inv, counts in _row_ngrams(ids, n):
        first = torch.full((counts.numel(),), T, device=ids.device, dtype=torch.long)
        first = first.scatter_reduce(0, inv, pos, reduce="amin")  # [U] first occurrence of each n-gram
        out[b, : T - n + 1] = (first[inv] <= pos - min_gap) & (counts[inv] <= max_repeats)
    return out


def repeat_sources(
    ids: torch.Tensor, n: int, min_gap: int = 256, max_repeats: int = 4, copies: bool = False
) -> torch.Tensor:
    """[B, T] bool: in plain text, the positions covered by an n-gram that occurs again at least `min_gap` tokens
    later, at most `max_repeats` times in its row: the far context a later passage copies from (the sources of
    `repeat_positions`' queries). SparsityConfig.copy_ngram's tier for rows where every position is labelled.
    With `copies`, also the later occurrences themselves (at least `min_gap` after the first): the text that
    copies, whose loss the sources serve (SparsityConfig.copy_repeats)."""
    T = ids.shape[1]
    out = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)  # [B, T]
    pos = torch.arange(max(T - n + 1, 0), device=ids.device)  # [T-n+1]
    for b, inv, counts in _row_ngrams(ids, n):
        last = torch.full((counts.numel(),), -1, device=ids.device, dtype=torch.long)
        last = last.scatter_reduce(0, inv, pos, reduce="amax")  # [U] last occurrence of each n-gram
        hit = last[inv] >= pos + min_gap  # [T-n+1] n-gram starts repeated far later
        if copies:
            first = torch.full((counts.numel(),), T, device=ids.device, dtype=torch.long)
            first = first.scatter_reduce(0, inv, pos, reduce="amin")  # [U] first occurrence of each n-gram
            hit |= first[inv] <= pos - min_gap  # [T-n+1] n-gram starts repeating far earlier text
        hit &= counts[inv] <= max_repeats
        for j in range(n):  # every token of a matched n-gram
            out[b, j : T - n + 1 + j] |= hit
    return out


def copy_sources(ids: torch.Tensor, labelled: torch.Tensor, n: int, max_repeats: int = 4) -> torch.Tensor:
    """[B, T] bool: the unlabelled positions that an n-gram the labelled positions repeat covers, where the n-gram
    occurs at most `max_repeats` times in its row (frequent ones such as "of the" point nowhere). In
    prompt/completion rows these are the far context the answers copy from: a quoted sentence and the words after
    it, a key, a name. Found from the token ids alone (SparsityConfig.copy_ngram).

    Args:
        ids: [B, T] token ids. labelled: [B, T] bool, the positions that predict a label.
    """
    T = ids.shape[1]
    out = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)  # [B, T]
    for b, inv, counts in _row_ngrams(ids, n):
        lab = labelled[b, : T - n + 1]  # [T-n+1]
        asked = torch.zeros(
            counts.numel(), dtype=torch.bool, device=ids.device
        )  # [U] n-grams the labels hold
        asked[inv[lab]] = True
        hit = asked[inv] & (counts[inv] <= max_repeats) & ~lab  # [T-n+1] n-gram starts in the context
        for j in range(n):  # every token of a matched n-gram
            out[b, j : T - n + 1 + j] |= hit
    return out


def query_mask(
    shift_labels: torch.Tensor | None, input_ids: torch.Tensor | None
) -> tuple[torch.Tensor | None, bool]:
    """([B, T] bool: the positions whose attention scores the blocks (see the module docstring), or None; whether
    they are plain text's far-repeat candidates, of which the scorer reads those attending farthest)."""
    if shift_labels is None:
        return None, False
    labelled = shift_labels != -100  # [B, T]
    if float(labelled.float().mean()) < 0.5 or input_ids is None or input_ids.shape != labelled.shape:
        return labelled, False
    return repeat_positions(input_ids) & labelled, True


def spread(index: torch.Tensor, limit: int) -> torch.Tensor:
    """At most `limit` entries of a sorted index [n], evenly spaced (deterministic, covering the whole row)."""
    if index.numel() <= limit:
        return index
    take = torch.linspace(0, index.numel() - 1, limit, device=index.device).round().long()  # [limit]
    return index[take]


def _probabilities(q: torch.Tensor, k: torch.Tensor, q_index: torch.Tensor, scale: float):
    """Per chunk of query rows: (first row, rows, causal attention probabilities [H_kv, c*g, n] in fp32, rows in
    (query, head-in-group) order). Chunks hold at most QUERY_CHUNK queries and SCORE_BYTES of probabilities.

    The query heads of one key/value head share its keys (GQA: query head h reads kv head h // group), so the keys
    are used as they are, not repeated per query head: at 32K on Llama-3-8B that is 128 MiB, not 512.
    """
    n, h_kv = k.shape[0], k.shape[1]
    group, d = q.shape[1] // h_kv, q.shape[2]
    kf = k.float().transpose(0, 1)  # [H_kv, n, D]
    cols = torch.arange(n, device=k.device)
    step = max(1, min(QUERY_CHUNK, SCORE_BYTES // (4 * q.shape[1] * n)))  # queries per chunk
    for c0 in range(0, q.shape[0], step):
        qc = q[c0 : c0 + step].float()  # [c, H, D]
        c = qc.shape[0]
        qg = qc.view(c, h_kv, group, d).permute(1, 0, 2, 3).reshape(h_kv, c * group, d)  # [H_kv, c*g, D]
        logits = torch.matmul(qg, kf.transpose(1, 2)).mul_(scale)  # [H_kv, c*g, n]
        future = cols[None, :] > q_index[c0 : c0 + step, None]  # [c, n]
        future = future.repeat_interleave(group, dim=0)  # [c*g, n], rows in qg's (query, head) order
        p = logits.masked_fill_(future, float("-inf")).softmax(dim=-1)  # [H_kv, c*g, n]
        del logits  # at most two chunk-sized tensors alive: the logits while their softmax is formed
        yield c0, c, p


@torch.no_grad()
def attention_received(
    q: torch.Tensor, k: torch.Tensor, q_index: torch.Tensor, scale: float, block_size: int
) -> torch.Tensor:
    """Score [nb] of each key block of one segment: the attention it receives from the query rows, as the max
    over its tokens, summed over heads and queries.

    Args:
        q: [nq, H, D] queries (RoPE applied) at the query positions.
        k: [n, H_kv, D] keys of every row of the segment (RoPE applied).
        q_index: [nq] the queries' row indices in the segment (causality: a query sees keys at <= its index).
    """
    n, h_kv = k.shape[0], k.shape[1]
    nb = -(-n // block_size)
    scores = torch.zeros(nb, dtype=torch.float32, device=k.device)
    full = n // block_size  # whole blocks; a partial last block is reduced on its own (no padded copy)
    for _, _, p in _probabilities(q, k, q_index, scale):
        rows = p.shape[1]  # c * group
        blocks = p[..., : full * block_size].view(h_kv, rows, full, block_size)  # [H_kv, c*g, full, b]
        scores[:full] += blocks.amax(dim=-1).sum(dim=(0, 1))  # [full]
        if full < nb:
            scores[full] += p[..., full * block_size :].amax(dim=-1).sum()
    return scores


@torch.no_grad()
def farthest(
    q: torch.Tensor, k: torch.Tensor, q_index: torch.Tensor, scale: float, keep: int
) -> torch.Tensor:
    """[<= keep] the query rows (indices into q, sorted) whose attention puts the most mass on keys at least
    FAR_TOKENS rows back, summed over heads: the plain-text positions that are retrieving. Shapes as in
    `attention_received`."""
    if q.shape[0] <= keep:
        return torch.arange(q.shape[0], device=q.device)
    group = q.shape[1] // k.shape[1]
    cols = torch.arange(k.shape[0], device=k.device)
    mass = []
    for c0, c, p in _probabilities(q, k, q_index, scale):
        far = cols[None, :] <= q_index[c0 : c0 + c, None] - FAR_TOKENS  # [c, n]
        far = far.repeat_interleave(group, dim=0)  # [c*g, n]
        mass.append((p * far).sum(dim=(0, 2)).view(c, group).sum(1))  # [c]
    return torch.cat(mass).topk(keep).indices.sort().values  # [keep]


@torch.no_grad()
def supervision_scores(
    parts: LayerParts,
    x: torch.Tensor,
    queries: torch.Tensor,
    block_size: int,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    far: bool = False,
) -> torch.Tensor:
    """[nb] block scores of one segment for forward elimination, from its normed rows x [n, d] and the query
    rows [nq] (sorted); with `far` (plain text) they are candidates, of which the MAX_QUERIES attending farthest
    back are read (`farthest`).

    Only the queries' q and every row's k are projected (the layer's forward has not run yet in forward mode).
    With `rope` (cos, sin, each [n, D]: the segment's rows) q and k are rotated as the layer's attention rotates
    them, so the score is the attention the layer will pay. Without it they stay pre-RoPE, which ignores where a
    block is: on the suite's rows (untrained SmolLM2, layer 14, keep 0.6) the rotated score kept evidence /
    filler blocks at 0.71 / 0.23 (prompt/completion) and 0.68 / 0.27 (plain text), the unrotated one at
    0.63 / 0.35 and 0.74 / 0.62 (docs/design.md section 1.3).
    """
    attn = parts.attn
    queries = spread(queries, FAR_CANDIDATES if far else MAX_QUERIES)
    q = attn.q_proj(x[queries]).view(queries.numel(), attn.num_heads, attn.head_dim)  # [nq, H, D]
    k = attn.k_proj(x).view(x.shape[0], attn.num_kv_heads, attn.head_dim)  # [n, H_kv, D]
    if attn.q_norm is not None:
        q = attn.q_norm(q)
    if attn.k_norm is not None:
        k = attn.k_norm(k)
    if rope is not None:
        cos, sin = rope  # [n, D] each
        q = apply_rope(q, cos[queries].to(q.dtype), sin[queries].to(q.dtype))  # [nq, H, D]
        k = apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))  # [n, H_kv, D]
    if far:
        pick = farthest(q, k, queries, attn.scaling, MAX_QUERIES)  # [<= MAX_QUERIES]
        q, queries = q[pick], queries[pick]
    return attention_received(q, k, queries, attn.scaling, block_size)
