"""The supervision scorer: query positions, and forward elimination keeping the blocks labelled positions attend
to, checked against a token-by-token float64 reference."""

import pytest
import torch

import lemo
from lemo.sparsity.supervision import attention_received, query_mask, repeat_positions
from lemo.testing import tiny_model, with_lora

T, B = 256, 16


def test_repeat_positions_mark_far_rare_bigrams_only():
    ids = torch.randint(100, 200, (1, 600), generator=torch.Generator().manual_seed(0))
    ids[0, 10:12] = torch.tensor([7, 8])  # a rare bigram ...
    ids[0, 400:402] = torch.tensor([7, 8])  # ... repeated far back: position 400 predicts its second token
    ids[0, 450:452] = torch.tensor([7, 8])
    near = repeat_positions(ids, min_gap=256)
    assert near[0, 400] and near[0, 450] and not near[0, 10]
    ids[0, 20:22] = torch.tensor([7, 8])
    ids[0, 30:32] = torch.tensor([7, 8])  # now 5 occurrences: too frequent to be a retrieval
    assert not repeat_positions(ids, min_gap=256, max_repeats=4)[0, 400]


def test_query_mask_is_the_labels_when_they_are_a_minority():
    labels = torch.full((1, 100), -100)
    labels[0, 90:] = 1
    mask, far = query_mask(labels, torch.zeros(1, 100, dtype=torch.long))
    assert mask.sum() == 10 and not far


def _reference_scores(q, k, queries, scale, nb):
    """float64, one query and one head at a time: block score = sum over heads and queries of the max
    attention probability among the block's keys."""
    H, group = q.shape[1], q.shape[1] // k.shape[1]
    scores = torch.zeros(nb, dtype=torch.float64)
    for i, pos in enumerate(queries.tolist()):
        for h in range(H):
            logits = (k[: pos + 1, h // group].double() @ q[i, h].double()) * scale  # [pos+1]
            p = torch.softmax(logits, 0)
            for blk in range(nb):
                seg = p[blk * B : (blk + 1) * B]
                if seg.numel():
                    scores[blk] += seg.max()
    return scores


@pytest.mark.parametrize(("n_queries", "n", "kv_heads"), [(5, T, 2), (70, T - 21, 2), (9, T, 4)])
def test_attention_received_matches_the_reference(n_queries, n, kv_heads):
    """Several query chunks (QUERY_CHUNK is 64), a partial last block, GQA groups of 2 and of 1."""
    torch.manual_seed(0)
    q, k = torch.randn(n_queries, 4, 8), torch.randn(n, kv_heads, 8)
    queries = torch.randperm(n)[:n_queries].sort().values
    got = attention_received(q, k, queries, 0.35, B)
    torch.testing.assert_close(
        got.double(), _reference_scores(q, k, queries, 0.35, -(-n // B)), rtol=1e-5, atol=1e-6
    )


def test_attention_received_bounds_its_chunk(monkeypatch):
    """At long rows fewer queries go into one softmax (SCORE_BYTES), with the same scores."""
    import lemo.sparsity.supervision as sup

    torch.manual_seed(1)
    q, k = torch.randn(7, 4, 8), torch.randn(T - 5, 2, 8)
    queries = torch.tensor([3, 40, 41, 100, 180, 222, 250])
    monkeypatch.setattr(sup, "SCORE_BYTES", 2 * 4 * 4 * (T - 5))  # two queries' [H, n] fp32 per chunk
    got = sup.attention_received(q, k, queries, 0.35, B)
    torch.testing.assert_close(
        got.double(), _reference_scores(q, k, queries, 0.35, -(-(T - 5) // B)), rtol=1e-5, atol=1e-6
    )


def test_farthest_reads_the_queries_attending_farthest_back(monkeypatch):
    """Of the candidates, `farthest` keeps those whose attention puts the most mass on keys at least FAR_TOKENS
    back (float64 reference, one query and head at a time); with no more candidates than kept, all of them."""
    import lemo.sparsity.supervision as sup

    monkeypatch.setattr(sup, "FAR_TOKENS", 40)
    torch.manual_seed(2)
    q, k = torch.randn(30, 4, 8), torch.randn(T, 2, 8)
    cand = torch.randperm(T)[:30].sort().values
    mass = torch.zeros(30, dtype=torch.float64)
    for i, pos in enumerate(cand.tolist()):
        for h in range(4):
            p = torch.softmax((k[: pos + 1, h // 2].double() @ q[i, h].double()) * 0.35, 0)  # [pos+1]
            mass[i] += p[: max(pos + 1 - 40, 0)].sum()
    want = mass.topk(9).indices.sort().values
    assert torch.equal(sup.farthest(q, k, cand, 0.35, 9), want)
    assert torch.equal(sup.farthest(q, k, cand, 0.35, 30), torch.arange(30))


def test_plain_text_queries_are_far_candidates():
    """Plain text (every position labelled) marks far-repeat candidates and says so; prompt/completion marks the
    labels, read as they are."""
    ids = torch.randint(0, 50, (1, 600), generator=torch.Generator().manual_seed(0))
    mask, far = query_mask(ids.clone(), ids)  # plain text: every position labelled
    assert far and mask.any() and not mask.all()
    labels = torch.full_like(ids, -100)
    labels[0, -20:] = ids[0, -20:]
    mask, far = query_mask(labels, ids)
    assert not far and int(mask.sum()) == 20


def test_forward_elimination_keeps_the_blocks_the_labels_attend_to():
    model = with_lora(tiny_model("llama", layers=4)).train()
    ids = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(3))
    labels = torch.full_like(ids, -100)
    labels[0, -24:] = ids[0, -24:]
    first = model.base_model.model.model.layers[1]  # the first sparse layer ("auto" on 4 layers)
    seen = {}

    def keep_inputs(_m, args, kw):
        seen.update(h=(args or (kw["hidden_states"],))[0].clone(), rope=kw["position_embeddings"])

    first.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    cfg = lemo.SparsityConfig(block_size=B, keep_ratio=0.5, scorer="supervision", random_fraction=0.0)
    lemo.apply(model, cfg)
    model(input_ids=ids, labels=labels).loss.backward()
    kept = set(lemo.stats(model)[1]["blocks"][0])
    # Reference: q at the labelled positions and k of every row, from the layer's normed input, rotated by the
    # layer's own RoPE tables as its attention rotates them (halves rotated: the HF convention).
    attn = first.self_attn
    x = first.input_layernorm(seen["h"][0]).detach()  # [T, d]
    queries = (labels[0, 1:] != -100).nonzero().flatten()  # position t predicts label t+1
    cos, sin = (t[0] for t in seen["rope"])  # [T, D] each

    def rotate(v, rows):  # v [n, H, D] at positions `rows`
        half = torch.cat((-v[..., 8:], v[..., :8]), dim=-1)
        return v * cos[rows, None, :] + half * sin[rows, None, :]

    q = rotate(attn.q_proj(x[queries]).view(len(queries), 4, 16), queries)
    k = rotate(attn.k_proj(x).view(T, 2, 16), torch.arange(T))
    scores = _reference_scores(q.detach(), k.detach(), queries, attn.scaling, T // B)
    nb = T // B
    forced = {0, nb - 2, nb - 1}  # the sink, the local block and the blocks holding labelled positions
    rest = sorted(set(range(nb)) - forced, key=lambda b: (-float(scores[b]), b))
    expect = forced | set(rest[: nb // 2 - len(forced)])
    assert kept == expect, (sorted(kept), sorted(expect))


def test_repeat_positions_of_longer_ngrams_match_a_brute_force_count():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 5, (2, 300), generator=g)  # a small vocabulary: many repeats
    for n in (2, 3, 4):
        got = repeat_positions(ids, min_gap=40, max_repeats=6, n=n)
        for b in range(2):
            grams = [tuple(ids[b, t : t + n].tolist()) for t in range(300 - n + 1)]
            want = [grams.index(x) <= t - 40 and grams.count(x) <= 6 for t, x in enumerate(grams)]
            assert got[b, : 300 - n + 1].tolist() == want and not got[b, 300 - n + 1 :].any()


def test_the_default_is_supervision_and_random_fraction_one_skips_scoring(monkeypatch):
    """SparsityConfig() scores by supervision with a random quarter; random_fraction=1.0 with it (allowed, since
    it is the default scorer) draws random blocks and never scores; the paper's preset keeps its oracle."""
    cfg = lemo.SparsityConfig()
    assert (cfg.scorer, cfg.random_fraction) == ("supervision", 0.25)
    assert cfg.copy_ngram == 3  # the copy tier is on by default since 2026-12-06
    want = "scorer=supervision + 25% random, labelled blocks first, copied 3-gram sources next"
    assert cfg.describe_selection() == want + " (prompt/completion rows)"  # logs, plan
    assert lemo.SparsityConfig(copy_plain_text=True).describe_selection() == want
    both = lemo.SparsityConfig(copy_plain_text=True, copy_repeats=True).describe_selection()
    assert both == want + " and their far repeats (plain text)"
    assert (
        lemo.SparsityConfig(random_fraction=1.0, copy_ngram=0).describe_selection()
        == "random blocks, labelled blocks first"
    )
    assert (lemo.SparsityConfig.paper().scorer, lemo.SparsityConfig.paper().copy_ngram) == ("oracle", 0)
    import lemo.sparsity.selection as selection

    calls = []
    real = selection.supervision_scores
    monkeypatch.setattr(selection, "supervision_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    ids = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(5))
    labels = torch.full_like(ids, -100)
    labels[0, -24:] = ids[0, -24:]
    for fraction, scored in ((1.0, False), (0.25, True)):
        calls.clear()
        model = with_lora(tiny_model("llama", layers=4)).train()
        lemo.apply(model, lemo.SparsityConfig(block_size=B, random_fraction=fraction))
        model(input_ids=ids, labels=labels).loss.backward()
        assert bool(calls) == scored, (fraction, len(calls))


@pytest.mark.parametrize("elimination", ["forward", "backward"])
def test_plain_text_reaches_the_far_filter_and_prompt_completion_does_not(monkeypatch, elimination):
    """The plain-text flag set by the loss forward reaches the scorer in both modes: plain text reads the
    candidates attending farthest (`farthest` runs), prompt/completion reads its labels as they are."""
    import lemo.sparsity.backward as bwd
    import lemo.sparsity.supervision as sup

    calls = []
    real = sup.farthest
    monkeypatch.setattr(sup, "farthest", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(bwd, "farthest", sup.farthest)
    ids = torch.randint(0, 50, (1, 600), generator=torch.Generator().manual_seed(0))  # far repeats: see above
    prompt = torch.full_like(ids, -100)
    prompt[0, -20:] = ids[0, -20:]
    for labels, far in ((ids.clone(), True), (prompt, False)):
        calls.clear()
        model = with_lora(tiny_model("llama", layers=4)).train()
        lemo.apply(model, lemo.SparsityConfig(block_size=B, elimination=elimination))
        model(input_ids=ids, labels=labels).loss.backward()
        assert bool(calls) == far, (elimination, far, len(calls))


@pytest.mark.parametrize(
    ("elimination", "scorer"),
    [("forward", "supervision"), ("backward", "supervision"), ("backward", "gradient")],
)
def test_every_selection_runs_inside_the_profiled_range(elimination, scorer):
    """The selector's cost is reported by the profiler range lemo.sparsity.selection.PROFILE_RANGE: every mode's
    selection (scoring included, in backward for the gradient scorer) opens it, once per sparse layer that
    selects (one for a shared forward selection)."""
    from torch.profiler import ProfilerActivity, profile

    from lemo.sparsity.selection import PROFILE_RANGE

    ids = torch.randint(0, 50, (1, T), generator=torch.Generator().manual_seed(0))  # [1, T]
    labels = torch.full_like(ids, -100)
    labels[0, -20:] = ids[0, -20:]
    model = with_lora(tiny_model("llama", layers=4)).train()
    cfg = lemo.SparsityConfig(block_size=B, elimination=elimination, scorer=scorer, trim_last_layer=False)
    lemo.apply(model, cfg)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(input_ids=ids, labels=labels).loss.backward()
    entered = [e for e in prof.events() if e.name == PROFILE_RANGE]
    sparse = len(lemo.stats(model))
    assert len(entered) == (1 if elimination == "forward" else sparse) and sparse >= 1


def test_the_default_with_an_evidence_mask_keeps_the_evidence_first():
    """The suite's `oracle-default`: SparsityConfig() with the evidence mask set keeps every evidence block (a
    block the supervision scorer alone leaves out), the labelled ones, and fills the rest as the default does."""
    from lemo.integrations.transformers.patch import sparsity_state

    ids = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(3))
    labels = torch.full_like(ids, -100)
    labels[0, -24:] = ids[0, -24:]

    def kept(evidence_block: int | None) -> set[int]:
        torch.manual_seed(0)
        model = with_lora(tiny_model("llama", layers=4)).train()
        lemo.apply(model, lemo.SparsityConfig(block_size=B))
        if evidence_block is not None:
            evidence = torch.zeros(1, T, dtype=torch.bool)
            evidence[0, evidence_block * B : evidence_block * B + 4] = True
            # On the decoder: PEFT calls the CausalLM's `forward` directly, past its hooks.
            model.base_model.model.model.register_forward_pre_hook(
                lambda m, a: setattr(sparsity_state(model), "evidence_mask", evidence)
            )
        model(input_ids=ids, labels=labels).loss.backward()
        return set(lemo.stats(model)[1]["blocks"][0])

    alone = kept(None)
    left_out = min(set(range(1, T // B - 2)) - alone)
    with_evidence = kept(left_out)
    assert left_out in with_evidence and len(with_evidence) == len(alone)
    assert {T // B - 2, T // B - 1} <= with_evidence  # the labelled blocks still come first
