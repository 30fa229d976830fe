"""A finished run ends with where its metrics are, what the bar's "kept" meant, and a next command that works."""

import json
import shlex

from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.train.next_steps import eval_command, kept_line
from lemo.train.progress import Progress


def test_the_run_ends_with_metrics_kept_and_a_next_command_that_works(
    tiny_model_dir, text_file, tmp_path, capsys
):
    out = tmp_path / "run"
    args = f"finetune --model {tiny_model_dir} --data {text_file} --eval-data {text_file} --seq-len 128"
    args += " --block-size 16 --keep-ratio 0.5 --steps 2 --warmup-steps 0 --eval-lengths 128 --eval-windows 1"
    assert main([*args.split(), "--output-dir", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    *_, saved, metrics, kept, last = lines
    assert saved == f"adapter saved to {out / 'adapter'}"
    assert metrics.endswith(f": {out / 'metrics.jsonl'}") and (out / "metrics.jsonl").is_file()

    # "kept" in the bar averages all layers, the dense ones counting as 1; the sparse layers' own share is beside it.
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["kept"] == (record["kept_sparse"] + 1) / 2  # the tiny model: layer 0 sparse, layer 1 dense
    assert f'"kept" ({record["kept"]:.2f} in the last step) is the share of layer-tokens kept' in kept
    assert "over all 2 layers, dense layers counting as 1" in kept
    assert f"the 1 sparse layers kept {record['kept_sparse']:.2f} (--keep-ratio 0.5)" in kept

    adapter = out / "adapter"
    command = (
        f"lemo eval --model {tiny_model_dir} --adapter {adapter} --data {text_file} --lengths 128 --windows 1"
    )
    assert last.startswith(f"next: evaluate the adapter with `{command}`")
    assert f"peft.PeftModel.from_pretrained(model, '{adapter}')" in last
    assert main(shlex.split(command)[1:]) == 0  # the command runs as printed...
    (after,) = [line for line in lines if line.startswith("held-out perplexity after @ 128 tokens: ")]
    assert (
        f" {after.split(': ')[1].split(' ')[0]} " in capsys.readouterr().out
    )  # ...and scores as the run did


def test_the_bar_names_what_kept_counts():
    postfix = Progress._postfix({"peak_mem_gb": 1.0, "kept": 0.8, "kept_sparse": 0.6})
    assert postfix.endswith("kept=0.80 of layer-tokens (sparse layers 0.60)")


def test_the_eval_command_of_the_demo_config():
    cfg = FinetuneConfig(seq_len=4096, eval_lengths=[4096], rope_scaling="linear", rope_factor=2.0)
    assert eval_command(cfg, None, "runs/demo/adapter") == (
        "lemo eval --adapter runs/demo/adapter --lengths 4096 --windows 2 --rope-scaling linear --rope-factor 2"
    )
    assert "--lengths 4096" in eval_command(
        FinetuneConfig(seq_len=4096), None, "a"
    )  # no eval lengths: seq_len
    assert kept_line(0.8, 0.6, 30, 15, 0.6).endswith("the 15 sparse layers kept 0.60 (--keep-ratio 0.6).")
