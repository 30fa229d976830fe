"""Backward elimination against dense and against an independent reference that drops exactly its paths."""

import pytest
import torch
from backward_reference import reference_grads  # beside this file

import lemo
from lemo.integrations.transformers.patch import sparsity_state
from lemo.ops import query_rows_attention, varlen_causal_attention
from lemo.sparsity.supervision import attention_received
from lemo.testing import ARCHS, assert_close, loss_and_grads, tiny_model, with_lora

T, B = 256, 16


def _model(arch: str = "llama", layers: int = 4) -> torch.nn.Module:
    return with_lora(tiny_model(arch, layers=layers)).train()


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(seed))


def _backward(keep: float, **kw) -> lemo.SparsityConfig:
    return lemo.SparsityConfig(
        elimination="backward", keep_ratio=keep, block_size=B, sparse_layers="all", **kw
    )


# Rows chosen after the forward (random blocks), and in the backward by the output gradient (test_gradient_scorer.py).
RANDOM = {"random_fraction": 1.0}
GRADIENT = {"scorer": "gradient", "random_fraction": 0.0}
MODES = pytest.mark.parametrize("mode", [RANDOM, GRADIENT], ids=["random", "gradient"])


@MODES
@pytest.mark.parametrize("arch", ARCHS)
def test_keep_one_equals_dense_in_loss_and_every_lora_gradient(arch, mode):
    ids = _ids()
    loss_d, grads_d = loss_and_grads(_model(arch), ids)
    model = lemo.apply(_model(arch), _backward(1.0, **mode))
    loss, grads = loss_and_grads(model, ids)
    assert_close(loss, loss_d, name="loss")
    for name, g in grads_d.items():
        assert_close(grads[name], g, rtol=1e-4, atol=1e-6, name=name)
    assert all(s["kept_fraction"] == 1.0 for s in lemo.stats(model).values())


@MODES
@pytest.mark.parametrize("keep", [0.25, 0.6])
def test_loss_equals_dense_for_any_keep_and_gradients_differ(keep, mode):
    ids = _ids(1)
    loss_d, grads_d = loss_and_grads(_model(), ids)
    model = lemo.apply(_model(), _backward(keep, **mode))
    loss, grads = loss_and_grads(model, ids)
    assert_close(loss, loss_d, name="loss")
    assert all(s["kept_fraction"] < 0.7 for s in lemo.stats(model).values())
    # Elimination is real: some LoRA gradient differs from dense's.
    assert max(float((grads[n] - g).abs().max()) for n, g in grads_d.items()) > 1e-4


@pytest.mark.parametrize("mode", [RANDOM, {**GRADIENT, "random_fraction": 0.25}], ids=["random", "gradient"])
def test_gradients_equal_a_reference_that_drops_exactly_these_paths(mode):
    """For the gradient scorer, the rows are recorded after the backward that chose them."""
    ids = _ids(2)
    model = lemo.apply(_model(), _backward(0.5, **mode))
    loss, grads = loss_and_grads(model, ids)
    kept = {i: sparsity_state(model).last[i].rows for i in range(4)}
    assert all(0.4 < r.numel() / T < 0.7 for r in kept.values())
    assert len({tuple(r.tolist()) for r in kept.values()}) > 1  # each layer chooses its own rows
    loss_r, grads_r = reference_grads(_model(), ids, kept)
    assert_close(loss, loss_r, name="loss")
    for name, g in grads_r.items():
        assert_close(grads[name], g, rtol=1e-4, atol=1e-6, name=name)


def _saved_bytes_in_backward(keep: float) -> int:
    """Bytes of the distinct storages autograd saves while the backward recomputes the kept rows (views of one
    tensor, such as the key prefixes each run of kept queries reads, count once)."""
    model = lemo.apply(_model(layers=2), _backward(keep, random_fraction=1.0))
    out = model(input_ids=_ids(3), labels=_ids(3))
    storages, alive = {}, []

    def pack(t):
        alive.append(t)  # held to the end, so a freed storage's address is not reused and miscounted
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out.loss.backward()
    return sum(storages.values())


def test_stored_activations_scale_with_keep():
    low, high = _saved_bytes_in_backward(0.25), _saved_bytes_in_backward(0.75)
    assert low < 0.7 * high, (low, high)  # K and V of every row are a constant share


def test_prompt_completion_keeps_the_labelled_blocks_and_the_loss():
    ids = _ids(4)
    labels = ids.clone()
    labels[:, : T - 40] = -100  # only the completion is trained on
    dense = _model()
    dense.zero_grad()
    loss_d = dense(input_ids=ids, labels=labels).loss
    model = lemo.apply(_model(), _backward(0.4, random_fraction=1.0))
    loss = model(input_ids=ids, labels=labels).loss
    assert_close(loss, loss_d, name="loss")
    nb = T // B
    for stats in lemo.stats(model).values():
        blocks = set(stats["blocks"][0])
        assert {nb - 3, nb - 2, nb - 1} <= blocks  # the blocks that hold positions predicting a label


def test_evidence_blocks_are_kept():
    ids = _ids(5)
    model = lemo.apply(_model(), _backward(0.3, random_fraction=1.0))
    evidence = torch.zeros(1, T, dtype=torch.bool)
    evidence[0, 100:110] = True  # block 6
    # On the decoder: PEFT calls the CausalLM's `forward` directly, past its hooks.
    model.base_model.model.model.register_forward_pre_hook(
        lambda m, a: setattr(sparsity_state(model), "evidence_mask", evidence)
    )
    loss_and_grads(model, ids)
    assert all(6 in s["blocks"][0] for s in lemo.stats(model).values())
    assert sparsity_state(model).evidence_mask is None  # one forward's evidence is not left behind


def test_supervision_scorer_keeps_the_blocks_the_labels_attend_to_in_the_layers_own_forward():
    """Backward mode scores from the layer's own q and k (RoPE applied), checked with HF's rotary code."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model = _model(layers=2)
    ids = _ids(7)
    labels = torch.full_like(ids, -100)
    labels[:, -20:] = ids[:, -20:]
    layer = model.base_model.model.model.layers[0]
    seen = {}
    layer.register_forward_pre_hook(
        lambda m, a, kw: seen.update(h=(a or (kw["hidden_states"],))[0].clone()), with_kwargs=True
    )
    lemo.apply(model, _backward(0.5, scorer="supervision", random_fraction=0.0))
    model(input_ids=ids, labels=labels)
    kept = set(lemo.stats(model)[0]["blocks"][0])
    attn = layer.self_attn
    with torch.no_grad():
        x = layer.input_layernorm(seen["h"])  # [1, T, d]
        q = attn.q_proj(x).view(1, T, 4, 16).transpose(1, 2)  # [1, H, T, D]
        k = attn.k_proj(x).view(1, T, 2, 16).transpose(1, 2)  # [1, H_kv, T, D]
        cos, sin = model.base_model.model.model.rotary_emb(x, torch.arange(T)[None])
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
    queries = (labels[0, 1:] != -100).nonzero().flatten()  # position t predicts label t+1
    q_rows = q[0].transpose(0, 1)[queries]  # [nq, H, D]
    scores = attention_received(q_rows, k[0].transpose(0, 1), queries, attn.scaling, B)
    nb = T // B
    forced = {0, nb - 2, nb - 1}  # sink, local, and the blocks holding labelled positions
    rest = sorted(set(range(nb)) - forced, key=lambda b: (-float(scores[b]), b))
    assert kept == forced | set(rest[: nb // 2 - len(forced)])


def test_supervision_scorer_trains_and_keeps_the_answer_blocks():
    ids = _ids(6)
    labels = torch.full_like(ids, -100)
    labels[:, -20:] = ids[:, -20:]
    cfg = _backward(0.5, scorer="supervision", random_fraction=0.25)
    model = lemo.apply(_model(), cfg)
    model.zero_grad()
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "lora" in n)
    assert all((T // B - 1) in s["blocks"][0] for s in lemo.stats(model).values())


def test_query_rows_attention_equals_full_attention_at_those_rows():
    torch.manual_seed(0)
    n0, n1 = 40, 30  # two segments
    q = torch.randn(n0 + n1, 4, 8)
    k, v = torch.randn(n0 + n1, 2, 8), torch.randn(n0 + n1, 2, 8)
    full = varlen_causal_attention(q, k, v, [0, n0, n0 + n1], 0.3)  # [N, H, D]
    pick = torch.tensor([0, 5, 39, 40 + 0, 40 + 17, 40 + 29])
    index = torch.tensor([0, 5, 39, 0, 17, 29])
    got = query_rows_attention(q[pick], k, v, index, [0, 3, 6], [0, n0, n0 + n1], 0.3)
    assert_close(got, full[pick], name="rows")


@pytest.mark.parametrize(
    ("kw", "fix"),
    [
        ({"elimination": "backward", "mlp": "channels"}, "use mlp='tokens'"),
        ({"elimination": "backward", "scorer": "gradient", "random_fraction": 1.0}, "random_fraction=0.0"),
        ({"elimination": "sideways"}, "'forward', 'backward'"),
    ],
)
def test_bad_combinations_name_the_fix(kw, fix):
    with pytest.raises(ValueError, match=fix.replace("(", r"\(")):
        lemo.SparsityConfig(**kw)
