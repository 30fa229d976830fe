import inspect
import pydoc
import subprocess
import sys
from dataclasses import dataclass, fields

import pytest

import lemo
from lemo import SparsityConfig
from lemo.config import FinetuneConfig
from lemo.plan import PlanConfig


def test_auto_layers_follow_the_artifact():
    assert SparsityConfig().resolve_layers(32) == list(range(15, 31))
    assert SparsityConfig().resolve_layers(30) == list(range(14, 29))
    assert SparsityConfig(sparse_layers="all").resolve_layers(4) == [0, 1, 2, 3]
    # "upper" is "auto" plus the last layer (the one the artifact keeps dense)
    assert SparsityConfig(sparse_layers="upper").resolve_layers(32) == list(range(15, 32))
    assert SparsityConfig(sparse_layers="none").resolve_layers(4) == []
    assert SparsityConfig(sparse_layers=[3, 1]).resolve_layers(4) == [1, 3]


def test_per_layer_values_by_sparse_layer_or_by_layer():
    layers = [1, 2]
    assert SparsityConfig(keep_ratio=0.5).per_layer("keep_ratio", layers, 4) == {1: 0.5, 2: 0.5}
    assert SparsityConfig(keep_ratio=[0.3, 0.6]).per_layer("keep_ratio", layers, 4) == {1: 0.3, 2: 0.6}
    assert SparsityConfig(keep_ratio=[1.0, 0.3, 0.6, 1.0]).per_layer("keep_ratio", layers, 4) == {
        1: 0.3,
        2: 0.6,
    }
    with pytest.raises(ValueError, match="one per sparse layer, or one per layer"):
        SparsityConfig(keep_ratio=[0.3, 0.6, 0.7]).per_layer("keep_ratio", layers, 4)


def test_the_sparsity_state_resolves_per_layer_values_once():
    from lemo.sparsity.state import SparsityState

    cfg = SparsityConfig(sparse_layers=[1, 2], keep_ratio=[0.3, 0.6], threshold=[0.0, 0.1, 0.2, 0.3])
    state = SparsityState.from_config(cfg, 4)
    assert (state.layers, state.keep_ratio, state.threshold) == ([1, 2], {1: 0.3, 2: 0.6}, {1: 0.1, 2: 0.2})
    with pytest.raises(ValueError, match="threshold has 3 values"):
        SparsityState.from_config(SparsityConfig(threshold=[0.1, 0.2, 0.3]), 8)  # auto: layers 3..6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_ratio": 0.0}, r"keep_ratio=0.0 is outside \(0, 1\]"),
        ({"keep_ratio": 1.2}, r"keep_ratio=1.2 is outside \(0, 1\]"),
        ({"keep_ratio": [0.5, -1]}, r"keep_ratio=-1 is outside"),
        ({"keep_ratio": []}, "is empty"),
        ({"threshold": 2.0}, r"threshold=2.0 is outside \[0, 1\]"),
        ({"mlp": "sparse"}, "mlp='sparse' is not supported; use one of 'dense', 'tokens', 'channels'"),
        ({"selection": "topk"}, "use one of 'ratio', 'threshold'"),
        ({"block_size": 0}, "block_size=0 must be a positive integer"),
        ({"sink_blocks": -1}, "sink_blocks=-1 must be a non-negative integer"),
        ({"sparse_layers": "half"}, "use 'auto', 'upper', 'all', 'none' or a list"),
        ({"sparse_layers": [1, 1]}, "distinct non-negative"),
        ({"loss_chunk": 0}, "loss_chunk=0"),
        (
            {"score_dilation": -1},
            r"score_dilation=-1 must be a non-negative number of blocks .*--score-dilation 1",
        ),
        ({"score_dilation": 0.5}, "score_dilation=0.5 must be a non-negative"),
    ],
)
def test_bad_values_name_the_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SparsityConfig(**kwargs)


def test_layers_beyond_the_model_are_refused():
    with pytest.raises(ValueError, match="the model has only 4 layers"):
        SparsityConfig(sparse_layers=[5]).resolve_layers(4)


def test_dict_round_trip_refuses_unknown_keys():
    cfg = SparsityConfig(keep_ratio=[0.2, 0.3], mlp="tokens")
    assert SparsityConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SparsityConfig keys"):
        SparsityConfig.from_dict({"keep": 0.3})


def test_one_loader_coerces_builds_sections_and_names_the_field():
    data = {
        "lr": "1e-4",
        "data": "book.txt",
        "lora": {"targets": "q_proj,v_proj"},
        "sparsity": {"keep_ratio": "0.5"},
    }
    cfg = lemo.config.from_dict(FinetuneConfig, data)  # "1e-4": how PyYAML reads a float without a dot
    assert (cfg.lr, cfg.data, cfg.lora.targets, cfg.sparsity.keep_ratio) == (
        1e-4,
        ["book.txt"],
        ["q_proj", "v_proj"],
        0.5,
    )
    with pytest.raises(
        ValueError, match=r"sparsity.block_size: 'big' is not an integer \(e.g. block_size: 64\)"
    ):
        lemo.config.from_dict(FinetuneConfig, {"sparsity": {"block_size": "big"}})
    # Every config's from_dict is this one, and so is a section given as a dict in Python.
    assert SparsityConfig.from_dict({"keep_ratio": "0.5"}).keep_ratio == 0.5
    with pytest.raises(ValueError, match=r"unknown LoraSettings keys \['rnak'\]"):
        FinetuneConfig(lora={"rnak": 4})


def test_dir_and_help_list_the_lazy_api_without_importing_torch_for_dir():
    # `import lemo` stays free of torch (the CLI's entry point relies on it); dir() must not change that, and
    # help() must show the model-facing functions that load on first use.
    code = (
        "import sys, lemo; names = dir(lemo); "
        "print(','.join(n for n in lemo.__all__ if n not in names), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]  # nothing missing from dir(), torch not imported
    text = pydoc.render_doc(lemo, renderer=pydoc.plaintext)
    for name in ("apply(", "remove(", "stats(", "calibrate(", "choose_keep_ratios(", "load_predictors("):
        assert name in text
    assert "class SparsityConfig" in text


def test_help_explains_every_field_from_its_attribute_docstring():
    text = pydoc.render_doc(SparsityConfig, renderer=pydoc.plaintext)
    assert "Fields:" in text and "keep_ratio: float | list[float] = 0.5" in text
    assert "Fraction of blocks kept per sparse layer" in text
    assert {f.name for f in fields(SparsityConfig)} <= set(lemo.config.field_docs(SparsityConfig))
    plan = pydoc.render_doc(PlanConfig, renderer=pydoc.plaintext)
    assert "host_gib: float | None = None" in plan and "The target machine's host RAM" in plan


@dataclass
class _Sub(lemo.config.DictConfig):
    """A config defined anywhere gets the section: the mechanism reads the class's own source."""

    size: int = 3
    """How big.

    A second paragraph keeps its lines."""
    plain: bool = False


def test_any_dict_config_gets_its_field_docs():
    doc = inspect.getdoc(_Sub)
    assert (
        doc.startswith("A config defined anywhere") and "Fields:\n    size: int = 3\n        How big." in doc
    )
    assert (
        "\n\n        A second paragraph keeps its lines." in doc and "plain" not in doc
    )  # no docstring, no entry
