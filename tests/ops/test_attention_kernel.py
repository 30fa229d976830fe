"""`SparsityConfig.attention_kernel`: which kernel runs the layers' causal attention where Triton would run.

SDPA (cuDNN or FlashAttention on a GPU) for up to `SDPA_MAX_SEGMENTS` segments under "auto", lemo's varlen kernel
for more or under "lemo"; the reference backend is SDPA either way. Checked on the CPU through Triton's
interpreter (the kernel) and the reference, so what runs on the GPU is the same choice.
"""

import pytest
import torch

import lemo.ops.sparse_attention.triton as tri
from lemo.config import SparsityConfig
from lemo.config.sparsity import SDPA_GQA_MAX_ROWS, SDPA_MAX_SEGMENTS, uses_sdpa
from lemo.ops.sparse_attention import reference, varlen_causal_attention


def test_policy():
    assert uses_sdpa("sdpa", 100) and not uses_sdpa("lemo", 1)
    assert uses_sdpa("auto", 1) and uses_sdpa("auto", SDPA_MAX_SEGMENTS)
    assert not uses_sdpa("auto", SDPA_MAX_SEGMENTS + 1)
    # grouped KV heads: SDPA repeats K and V per query head, so past SDPA_GQA_MAX_ROWS rows auto keeps lemo's kernel
    assert uses_sdpa("auto", 1, SDPA_GQA_MAX_ROWS, grouped=True)
    assert not uses_sdpa("auto", 1, SDPA_GQA_MAX_ROWS + 1, grouped=True)
    assert uses_sdpa("auto", 1, SDPA_GQA_MAX_ROWS + 1) and uses_sdpa("sdpa", 1, 10**6, grouped=True)
    assert SparsityConfig().attention_kernel == "auto"
    with pytest.raises(ValueError, match=r"attention_kernel='flash'.*'auto', 'sdpa', 'lemo'"):
        SparsityConfig(attention_kernel="flash")


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize(
    ("kernel", "segments", "runs_lemo"),
    [("auto", 1, False), ("auto", SDPA_MAX_SEGMENTS + 1, True), ("lemo", 1, True), ("sdpa", 12, False)],
)
def test_dispatch(monkeypatch, kernel, segments, runs_lemo):
    """Under backend="triton", the kernel runs only where the policy says; both give the reference's attention."""
    calls = []
    lemo_kernel = tri.varlen_causal_attention
    monkeypatch.setattr(tri, "varlen_causal_attention", lambda *a: calls.append(1) or lemo_kernel(*a))
    cu = [4 * i for i in range(segments + 1)]  # segments of 4 rows
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(cu[-1], h, 16, generator=g) for h in (2, 1, 1))
    got = varlen_causal_attention(q, k, v, cu, 0.25, backend="triton", kernel=kernel)
    assert bool(calls) == runs_lemo
    torch.testing.assert_close(
        got, reference.varlen_causal_attention(q, k, v, cu, 0.25), rtol=1e-5, atol=1e-6
    )


def test_layers_pass_the_config(monkeypatch):
    """A sparse layer's forward (plain and tiled) asks the attention op for the config's kernel."""
    import lemo.sparsity.parts as parts
    from lemo import apply
    from lemo.testing import tiny_model

    seen = []
    op = parts.varlen_causal_attention
    monkeypatch.setattr(
        parts, "varlen_causal_attention", lambda *a, **kw: seen.append(kw["kernel"]) or op(*a, **kw)
    )
    ids = torch.randint(0, 200, (1, 256))
    for tiled in ({}, {"tile_tokens": 64, "tile_attention": True}):
        model = tiny_model(layers=4)
        apply(model, SparsityConfig(attention_kernel="lemo", sparse_layers=[1, 2, 3], **tiled))
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
    assert seen and set(seen) == {"lemo"}
