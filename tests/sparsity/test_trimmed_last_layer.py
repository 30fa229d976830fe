"""The trimmed last layer (`trim_last_layer`): the last decoder layer runs only the rows the loss reads, and the
loss and every LoRA gradient equal those of the full layer."""

import pytest
import torch

import lemo
from lemo.integrations.transformers.loading import enable_gradient_checkpointing
from lemo.testing import ARCHS, assert_close, tiny_model, with_lora

T, B = 256, 16


def _model(arch: str = "llama", layers: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return with_lora(tiny_model(arch, layers=layers)).train()


def _ids(batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, T), generator=torch.Generator().manual_seed(seed))


def _completion(ids: torch.Tensor, prompt: int = 3 * T // 4) -> torch.Tensor:
    labels = ids.clone()
    labels[:, :prompt] = -100  # prompt/completion: the last quarter is trained on
    return labels


def _cfg(**kw) -> lemo.SparsityConfig:
    return lemo.SparsityConfig(block_size=B, **kw)


def _run(model, ids, labels, **kw):
    """Loss, every trainable gradient, and the rows the last layer's MLP ran (one entry per call)."""
    rows: list[int] = []
    mlp = model.get_base_model().model.layers[-1].mlp
    # A pre-hook: checkpoint's recompute stops once it has what backward needs, before a module's post-hook.
    handle = mlp.register_forward_pre_hook(
        lambda _m, args: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
    )
    torch.manual_seed(1)  # the random blocks: the same draws with and without trimming
    model.zero_grad(set_to_none=True)
    try:
        loss = model(input_ids=ids, labels=labels, **kw).loss
        loss.backward()
    finally:
        handle.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, rows


def _compare(cfg: dict, ids, labels, arch="llama", checkpointing=False, **kw):
    results = []
    for trim in (False, True):
        model = _model(arch)
        if checkpointing:
            enable_gradient_checkpointing(model)
        lemo.apply(model, _cfg(trim_last_layer=trim, **cfg))
        results.append(_run(model, ids, labels, **kw))
        if checkpointing:  # HF's flag, suspended for a forward that trims, comes back after it
            assert all(layer.gradient_checkpointing for layer in model.get_base_model().model.layers)
    (loss_f, grads_f, rows_f), (loss_t, grads_t, rows_t) = results
    assert_close(loss_t, loss_f, name="loss")
    for name, g in grads_f.items():
        assert_close(grads_t[name], g, rtol=1e-4, atol=1e-6, name=name)
    return rows_f, rows_t


@pytest.mark.parametrize("arch", ARCHS)
def test_trimmed_equals_full_on_prompt_completion_rows(arch):
    ids = _ids()
    rows_full, rows_trim = _compare({}, ids, _completion(ids), arch)
    assert rows_full == [T]
    assert rows_trim == [T // 4]  # the labelled positions (kept first), nothing else runs the MLP


def test_trimmed_equals_full_on_plain_text_and_runs_the_kept_rows():
    ids = _ids(seed=1)
    rows_full, rows_trim = _compare({}, ids, ids)
    assert rows_full == [T]
    # Every position is labelled; the loss scores the kept ones (about the keep ratio's share; the last position
    # predicts nothing).
    keep = lemo.SparsityConfig().keep_ratio
    assert (keep - 0.1) * T < rows_trim[0] < (keep + 0.1) * T


def test_exact_lora_with_a_trimmed_last_layer_equals_plain_lora():
    ids = _ids(seed=2)
    labels = _completion(ids)
    plain = _model()
    torch.manual_seed(1)
    loss_p = plain(input_ids=ids, labels=labels).loss
    loss_p.backward()
    model = lemo.apply(_model(), _cfg(sparse_layers="none"))
    loss, grads, rows = _run(model, ids, labels)
    assert rows == [T // 4]
    assert_close(loss, loss_p.detach(), name="loss")
    for name, p in plain.named_parameters():
        if p.requires_grad:
            assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6, name=name)


def test_a_layer_scoring_most_rows_runs_whole():
    """Plain text without elimination scores every row: the full layer is as cheap (TRIM_MAX_SHARE)."""
    ids = _ids(seed=9)
    model = lemo.apply(_model(), _cfg(sparse_layers="none"))
    _, _, rows = _run(model, ids, ids)
    assert rows == [T]


def test_trimmed_under_backward_elimination():
    ids = _ids(seed=3)
    _, rows = _compare({"elimination": "backward"}, ids, _completion(ids))
    assert rows == [T // 4]


@pytest.mark.parametrize(
    ("extra", "passes"),
    [({}, 2), ({"offload": "cpu"}, 2), ({"tile_tokens": 48, "tile_attention": True}, 3)],
    ids=["checkpointing", "offload", "tiled"],
)
def test_trimmed_with_checkpointing_offload_and_tiles(extra, passes):
    ids = _ids(seed=4)
    _, rows = _compare(extra, ids, _completion(ids), checkpointing=True)
    # The forward and the recompute in backward run the loss rows only; tiles split them, and each tile runs once
    # more in its own backward.
    assert sum(rows) == passes * T // 4
    assert max(rows) <= extra.get("tile_tokens", T)


def test_trimmed_on_a_padded_batch():
    ids = _ids(batch=2, seed=5)
    mask = torch.ones_like(ids)
    mask[1, -40:] = 0  # right padding of the second sample
    labels = _completion(ids)
    labels[mask == 0] = -100
    _, rows = _compare({}, ids, labels, attention_mask=mask)
    assert rows == [2 * T // 4 - 40]


def test_recorded_hidden_states_and_label_free_forwards_run_every_row():
    ids = _ids(seed=6)
    labels = _completion(ids)
    model = lemo.apply(_model(), _cfg())
    _, _, rows = _run(model, ids, labels, output_hidden_states=True)
    assert rows == [T]  # hidden states are recorded: nothing is trimmed
    _, _, rows = _run(model, ids, labels)
    assert rows == [T // 4]
    seen: list[int] = []
    mlp = model.get_base_model().model.layers[-1].mlp
    handle = mlp.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[-2]))
    with torch.no_grad():
        model(input_ids=ids)  # no labels: the model's own forward, every row
        model.eval()
        model(input_ids=ids, labels=labels)  # evaluation runs dense
    handle.remove()
    assert seen == [T, T]


def test_remove_restores_the_last_layer():
    ids = _ids(seed=7)
    model = _model()
    layer = model.get_base_model().model.layers[-1]
    assert "forward" not in layer.__dict__
    lemo.apply(model, _cfg())
    assert "forward" in layer.__dict__
    lemo.remove(model)
    assert "forward" not in layer.__dict__
    with torch.no_grad():
        out = model(input_ids=ids).logits
        ref = _model()(input_ids=ids).logits
    assert torch.equal(out, ref)


def test_a_sparse_last_layer_is_not_trimmed():
    ids = _ids(seed=8)
    model = lemo.apply(_model(), _cfg(sparse_layers="upper"))
    _, _, rows = _run(model, ids, _completion(ids))
    keep = lemo.SparsityConfig().keep_ratio
    assert (keep - 0.1) * T < rows[0] < (keep + 0.15) * T  # the kept rows of the sparse last layer


@pytest.mark.parametrize("elimination", ["forward", "backward"])
def test_under_autocast_the_kept_queries_attention_runs_in_the_autocast_dtype(elimination):
    """RoPE's fp32 tables make q and k fp32 under bf16 autocast while v is bf16; the dense layer's SDPA casts all
    three, and so must lemo's kept-queries attention (the trimmed layer, backward elimination's recompute)."""
    ids = _ids(seed=10)
    labels = _completion(ids)
    out = []
    for trim in (False, True):
        model = lemo.apply(_model(), _cfg(trim_last_layer=trim, elimination=elimination))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(_run(model, ids, labels))
    (loss_w, grads_w, _), (loss_t, grads_t, rows) = out
    assert rows == [T // 4]
    assert_close(loss_t, loss_w, rtol=1e-2, atol=1e-2, name="loss")
    for name, g in grads_w.items():
        assert float((grads_t[name] - g).norm()) <= 0.05 * float(g.norm()) + 1e-6, name


@pytest.mark.parametrize("elimination", ["forward", "backward"])
@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_the_kept_queries_attention_runs_the_configured_backend(monkeypatch, elimination, backend):
    """The trimmed layer and backward elimination's recompute pass `SparsityConfig.backend` to their attention,
    as the other layers do: `backend="reference"` on a GPU must not run the Triton kernel there (it ran "auto")."""
    import lemo.sparsity.query_rows as query_rows

    seen, real = [], query_rows.query_rows_attention

    def spy(*args, backend=None, **kw):
        seen.append(backend)
        return real(*args, backend=backend, **kw)

    monkeypatch.setattr(query_rows, "query_rows_attention", spy)
    ids = _ids(seed=11)
    model = lemo.apply(_model(), _cfg(elimination=elimination, backend=backend))
    _run(model, ids, _completion(ids))
    assert seen and set(seen) == {backend}
