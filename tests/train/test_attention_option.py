"""`--attention s2`: the longlora baseline's shifted sparse attention in `lemo finetune`."""

import math
from unittest import mock

import pytest

from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.integrations.transformers import shifted_sparse
from lemo.train.loop import finetune


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "cannot run beside token elimination"),
        ({"sparse": False, "data_mode": "pack"}, "use --data-mode chunk"),
        ({"sparse": False, "seq_len": 100}, "--seq-len 100 must be a multiple of 8"),
        ({"attention": "s3"}, "--attention 's3' is unknown"),
    ],
)
def test_bad_combinations_name_the_fix(kw, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**{"attention": "s2", **kw})


def test_s2_is_accepted_without_sparse_layers():
    FinetuneConfig(attention="s2", sparse=False)
    FinetuneConfig(attention="s2", sparsity={"sparse_layers": "none"})


def test_finetune_with_s2_runs_it_in_training(tiny_model_dir, text_file, tmp_path):
    spy = mock.patch.object(
        shifted_sparse, "shifted_sparse_attention", wraps=shifted_sparse.shifted_sparse_attention
    )
    with spy as calls:
        result = finetune(
            FinetuneConfig(
                model=str(tiny_model_dir),
                data=[str(text_file)],
                seq_len=128,
                steps=2,
                save_every=0,
                output_dir=str(tmp_path / "run"),
                progress=False,
                attention="s2",
                sparse=False,
                eval_lengths=[64],
                eval_windows=1,
            )
        )
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)
    assert calls.call_count == 2 * 2  # two layers, two steps; the held-out evaluations ran dense
    assert calls.call_args.args[3] == 4  # four groups
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_cli_takes_the_attention_flag(tiny_model_dir, text_file, tmp_path):
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--seq-len", "128"]
    flags = ["--steps", "1", "--attention", "s2", "--sparse-layers", "none", "--no-progress"]
    assert main([*args, *flags, "--output-dir", str(tmp_path / "run")]) == 0
    assert "attention: s2" in (tmp_path / "run" / "config.yaml").read_text()
