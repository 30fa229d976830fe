"""scorer="gradient": backward elimination choosing each layer's kept rows in its backward pass, by the norm of
the loss gradient at the layer's output rows. Keep 1 equal to dense, the loss equal to dense at any keep, and the
gradients equal to the independent reference given the rows chosen: test_backward.py (its `GRADIENT` mode)."""

import pytest
import torch

import lemo
from lemo.integrations.transformers.patch import sparsity_state
from lemo.testing import tiny_model, with_lora

T, B = 256, 16
NB = T // B


def _model(arch: str = "llama", layers: int = 4) -> torch.nn.Module:
    return with_lora(tiny_model(arch, layers=layers)).train()


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(seed))


def _gradient(keep: float, **kw) -> lemo.SparsityConfig:
    kw.setdefault("random_fraction", 0.0)
    return lemo.SparsityConfig(
        elimination="backward", scorer="gradient", keep_ratio=keep, block_size=B, sparse_layers="all", **kw
    )


def _step(model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    return loss.detach()


def _block_scores(grad: torch.Tensor) -> list[float]:
    """float64 reference: per block, the largest L2 norm of a row of grad [T, d] among the block's rows."""
    norms = [float(torch.linalg.vector_norm(row.double())) for row in grad]
    return [max(norms[b * B : (b + 1) * B]) for b in range(NB)]


def _labels_in_two_blocks(ids: torch.Tensor) -> torch.Tensor:
    labels = torch.full_like(ids, -100)
    labels[0, 120:124] = ids[0, 120:124]  # positions 119-122 predict a label: block 7
    labels[0, 185:187] = ids[0, 185:187]  # positions 184-185: block 11
    return labels


def test_the_gradient_alone_finds_the_labelled_blocks():
    """Label priority off: the labelled rows carry the loss's gradient, and every layer keeps their blocks."""
    ids = _ids(3)
    model = lemo.apply(_model(), _gradient(0.25, label_priority=False))
    _step(model, ids, _labels_in_two_blocks(ids))
    assert all(set(s["blocks"][0]) == {0, 7, 11, NB - 1} for s in lemo.stats(model).values())


def test_each_layer_keeps_the_blocks_with_the_largest_output_gradient():
    """Beyond the labelled blocks, the free budget goes where the gradient reached through attention: checked
    against a float64 ranking of the gradient each layer's output received (seen by a hook on the output)."""
    ids = _ids(3)
    model = _model()
    outputs = {}

    def watch(i: int):
        def hook(_module, _args, out) -> None:
            out = out[0] if isinstance(out, tuple) else out  # [1, T, d]
            out.register_hook(lambda g: outputs.__setitem__(i, g[0].detach().clone()))

        return hook

    for i, layer in enumerate(model.base_model.model.model.layers):
        layer.register_forward_hook(watch(i))
    lemo.apply(model, _gradient(0.5, label_priority=False))
    _step(model, ids, _labels_in_two_blocks(ids))
    stats = lemo.stats(model)
    for i in range(4):
        scores = _block_scores(outputs[i])
        forced = {0, NB - 1}  # sink and local
        rest = sorted(set(range(NB)) - forced, key=lambda b: (-scores[b], b))
        assert set(stats[i]["blocks"][0]) == forced | set(rest[: NB // 2 - len(forced)]), i
    # The last layer's output gradient is nonzero at the labelled positions only (the LM head is row-wise): its
    # free blocks past the labelled two are the first by position (ties); the layers below rank by attention.
    assert stats[3]["blocks"][0] == [0, 1, 2, 3, 4, 7, 11, NB - 1]
    assert any(set(stats[i]["blocks"][0]) != set(stats[3]["blocks"][0]) for i in range(3))


def test_labelled_and_evidence_blocks_come_first_and_the_rest_follows_the_gradient():
    ids = _ids(4)
    labels = ids.clone()
    labels[:, : T - 40] = -100  # prompt/completion: the completion alone is trained on
    evidence = torch.zeros(1, T, dtype=torch.bool)
    evidence[0, 100:110] = True  # block 6
    model = lemo.apply(_model(), _gradient(0.5))
    # The masks are one forward's (cleared when it ends): the tiers must be taken at forward time.
    model.base_model.model.model.register_forward_pre_hook(
        lambda m, a: setattr(sparsity_state(model), "evidence_mask", evidence)
    )
    _step(model, ids, labels)
    for stats in lemo.stats(model).values():
        assert {0, 6, NB - 3, NB - 2, NB - 1} <= set(stats["blocks"][0])
        assert len(stats["blocks"][0]) == NB // 2


def test_selection_is_stored_in_backward_and_saves_nothing_but_the_layer_input():
    ids = _ids(5)
    model = lemo.apply(_model(layers=2), _gradient(0.25))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = model(input_ids=ids, labels=ids)
    assert lemo.stats(model) == {}  # nothing chosen yet: the choice needs the gradient
    assert sum(t.shape == (T, 64) for t in saved) >= 2  # the layer inputs h [B*T, d] of both layers
    reference = lemo.apply(_model(layers=2), lemo.SparsityConfig(elimination="backward", keep_ratio=0.25,
                                                                  block_size=B, sparse_layers="all"))  # fmt: skip
    saved_fixed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved_fixed.append(t) or t, lambda t: t):
        reference(input_ids=ids, labels=ids)
    # The same tensors as a selection made in the forward (which keeps its rows outside autograd's saved set).
    assert [t.shape for t in saved] == [t.shape for t in saved_fixed]
    out.loss.backward()
    assert {i: len(s["blocks"][0]) for i, s in lemo.stats(model).items()} == {0: NB // 4, 1: NB // 4}


def test_random_share_draws_from_torchs_default_generator():
    ids = _ids(6)

    def blocks(model) -> dict[int, list[int]]:
        _step(model, ids, ids)
        return {i: s["blocks"][0] for i, s in lemo.stats(model).items()}

    model = lemo.apply(_model(), _gradient(0.5, random_fraction=0.5))
    torch.manual_seed(0)
    first = blocks(model)
    state = torch.get_rng_state()
    second = blocks(model)  # the next step draws on from the generator
    torch.manual_seed(0)
    assert blocks(model) == first  # same seed, same choice
    torch.set_rng_state(state)
    assert blocks(model) == second  # a run resumed with the saved generator state draws what it would have
    assert first != second
    torch.manual_seed(0)
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=ids).loss
    assert torch.equal(torch.get_rng_state(), _seeded_state(0))  # the forward draws nothing ...
    loss.backward()
    assert not torch.equal(torch.get_rng_state(), _seeded_state(0))  # ... the backward's choice does


def _seeded_state(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.get_rng_state()


@pytest.mark.parametrize(
    ("kw", "fix"),
    [
        ({"scorer": "gradient", "random_fraction": 0.0}, "elimination='backward'"),
        ({"scorer": "gradient", "elimination": "backward", "random_fraction": 1.0}, "random_fraction=0.0"),
    ],
)
def test_bad_combinations_name_the_fix(kw, fix):
    with pytest.raises(ValueError, match=fix):
        lemo.SparsityConfig(**kw)
