"""`lemo bench`: the end-to-end benchmark of the installed package (lemo.bench), and its checkout scripts."""

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lemo
from lemo.bench.model import build_model
from lemo.bench.step import model_tflop
from lemo.cli.__main__ import main
from lemo.config import BenchConfig, SparsityConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_bench_dir(monkeypatch):
    """The old checkout lookup's LEMO_BENCH_DIR must change nothing: it is unset for every test here."""
    monkeypatch.delenv("LEMO_BENCH_DIR", raising=False)
    from lemo.bench.run import MEASURED_ENV

    for name in MEASURED_ENV:  # recorded in the command column when set: the tests compare it
        monkeypatch.delenv(name, raising=False)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_help_is_the_benchmarks_own(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: lemo bench" in out
    assert "--shape" in out and "--lengths" in out and "--configs" in out and "--model" in out


def test_defaults_are_the_products(monkeypatch, capsys):
    """`lemo bench` measures what a user gets: SparsityConfig()'s keep ratio and backend, read from the dataclass."""
    import lemo.config.bench
    from lemo.bench import run

    args = run.parse_args([])
    assert (args.keep_ratio, args.backend) == (SparsityConfig().keep_ratio, SparsityConfig().backend)
    assert args.backend == "auto" and args == BenchConfig()
    # New library defaults move the benchmark's with them: nothing is repeated in its config or flags.
    moved = dataclasses.replace(SparsityConfig(), keep_ratio=0.55, backend="triton")
    monkeypatch.setattr(lemo.config.bench, "SparsityConfig", lambda: moved)
    args = run.parse_args([])
    assert (args.keep_ratio, args.backend) == (0.55, "triton")
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "Kept fraction of the lemo configs; the default is SparsityConfig's. (default: 0.55)" in " ".join(
        capsys.readouterr().out.split()
    )


def test_the_flags_are_bench_configs_fields(capsys):
    """One generator for every command: each BenchConfig field is a flag with its docstring as help, the
    shape and config names are lemo.bench's, and a bad value is a usage error or a one-line error naming the fix."""
    from lemo.bench import run
    from lemo.bench.configs import CONFIGS

    argv = ["--model", "m", "--lengths", "128", "256", "--configs", "exact", "lemo", "--mode", "longest"]
    argv += ["--cap-gib", "40", "--probe-lengths", "64", "--warmup-layers", "few", "--out", "x.csv"]
    assert run.parse_args(argv) == BenchConfig(
        model="m", lengths=[128, 256], configs=["exact", "lemo"], mode="longest", cap_gib=40.0,
        probe_lengths=[64], warmup_layers="few", out="x.csv",
    )  # fmt: skip
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(BenchConfig):
        assert "--" + f.name.replace("_", "-") in text
    assert "--model DIR Benchmark this local HF model directory" in text
    assert "Choices: lora, lora+gc, exact," in text and "(default: ['lora', 'lemo'])" in text
    assert run.parse_args(["--configs", *CONFIGS]).configs == list(CONFIGS)
    with pytest.raises(SystemExit):
        main(["bench", "--configs", "lemo-fast"])
    assert "argument --configs: invalid choice: 'lemo-fast'" in capsys.readouterr().err
    assert main(["bench", "--steps", "0"]) == 2
    assert capsys.readouterr().err == "lemo bench: error: --steps 0 must be a positive integer.\n"
    with pytest.raises(ValueError, match="--configs lemo-fast: unknown"):
        run.benchmark(BenchConfig(configs=["lemo-fast"]))


def test_plot_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "plot", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: lemo bench plot" in out and "--out-dir" in out


def test_lemo_help_lists_bench(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capsys.readouterr().out


def test_runs_a_tiny_benchmark_on_cpu_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nowhere near benchmarks/: the installed package alone must do
    argv = ["--shape", "tiny", "--lengths", "128", "--configs", "lora", "lemo"]
    argv += ["--steps", "1", "--warmup", "0", "--out", "x.csv"]
    assert main(["bench", *argv]) == 0
    rows = read_rows(tmp_path / "x.csv")
    assert [(r["config"], r["shape"], r["seq_len"], r["status"]) for r in rows] == [
        ("lora", "tiny", "128", "ok"),
        ("lemo", "tiny", "128", "ok"),
    ]
    assert all(float(r["median_step_s"]) > 0 for r in rows)
    # The CSV names the command that produced it, so the row reproduces from any install.
    assert rows[0]["command"] == "lemo bench " + " ".join(argv)
    # Nothing was loaded from a checkout's script files: every benchmark module is the package's own.
    package = Path(lemo.__file__).resolve().parent
    loaded = [m for name, m in sys.modules.items() if name.startswith("lemo.bench")]
    assert loaded and all(package in Path(m.__file__).resolve().parents for m in loaded)
    assert not [name for name in sys.modules if name.startswith("_lemo_e2e_")]


def test_benchmarks_the_users_own_model_dir(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine.csv"
    argv = [
        "bench",
        "--model",
        str(tiny_model_dir),
        "--lengths",
        "128",
        "--configs",
        "exact",
        "lemo-random+gc",
    ]
    argv += ["--steps", "1", "--warmup", "0", "--out", str(out)]
    assert main(argv) == 0
    rows = read_rows(out)
    assert [(r["config"], r["shape"], r["seq_len"], r["status"]) for r in rows] == [
        ("exact", tiny_model_dir.name, "128", "ok"),
        ("lemo-random+gc", tiny_model_dir.name, "128", "ok"),
    ]
    # The product's defaults (SparsityConfig()): its keep ratio for the sparse row, its backend for both.
    keep = SparsityConfig().keep_ratio
    assert [r["keep_ratio"] for r in rows] == ["1.0", str(keep)]
    assert [r["backend"] for r in rows] == [SparsityConfig().backend] * 2 == ["auto", "auto"]
    assert all(float(r["median_step_s"]) > 0 and float(r["loss"]) > 0 for r in rows)
    # The directory's model, not the random shape that --shape's default names: its FLOPs are the dir's.
    model = build_model("llama2-7b", torch.device("cpu"), 128, model_dir=tiny_model_dir)
    assert model.config.vocab_size == 49152  # SmolLM2's vocabulary, as the fixture saved it
    assert float(rows[0]["model_tflop_per_step"]) == pytest.approx(model_tflop(model, 128), rel=1e-4)


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda d: d / "missing", "no such directory"),
        (lambda d: d, "no config.json"),  # an existing directory that holds no model
    ],
)
def test_a_bad_model_dir_is_a_clear_error(make, what, tmp_path, capsys):
    bad = make(tmp_path)
    out = tmp_path / "x.csv"
    assert main(["bench", "--model", str(bad), "--lengths", "128", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lemo bench: error: --model ") and what in err
    assert "Traceback" not in err
    assert "--shape" in err and "config.json" in err  # the fix: a saved HF model dir, or a built-in shape
    assert not out.exists()  # refused before anything ran


def test_a_model_dir_without_weights_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    assert (
        main(["bench", "--model", str(tmp_path), "--lengths", "128", "--out", str(tmp_path / "x.csv")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("lemo bench: error: --model ") and "no weights" in err and "Traceback" not in err


def test_a_model_dir_without_a_tokenizer_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    for f in tiny_model_dir.iterdir():
        if not f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            (tmp_path / f.name).symlink_to(f)
    assert (
        main(["bench", "--model", str(tmp_path), "--lengths", "128", "--out", str(tmp_path / "x.csv")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("lemo bench: error: --model ") and "no tokenizer" in err and "Traceback" not in err


def test_shape_and_model_are_exclusive(tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--shape", "tiny", "--model", str(tiny_model_dir)])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_arguments_pass_through_unchanged(monkeypatch, capsys):
    from lemo.bench import plot, run

    monkeypatch.setattr(run, "main", lambda argv, prog=None: print("bench", argv, prog) or 3)
    monkeypatch.setattr(plot, "main", lambda argv, prog=None: print("plot", argv, prog) or 0)
    assert main(["bench", "--weird", "x", "-h2"]) == 3
    assert main(["bench", "plot", "a.csv", "--prefix", "p"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "bench ['--weird', 'x', '-h2'] lemo bench"
    assert out[1] == "plot ['a.csv', '--prefix', 'p'] lemo bench plot"


def test_checkout_script_is_a_shim_over_the_package(tmp_path):
    """benchmarks/e2e/bench.py still runs as before (the sweep scripts call it) and records itself."""
    out = tmp_path / "x.csv"
    argv = ["--shape", "tiny", "--lengths", "128", "--configs", "lora", "--steps", "1", "--warmup", "0"]
    script = "benchmarks/e2e/bench.py"
    done = subprocess.run(
        [sys.executable, script, *argv, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "config=lora  seq_len=128  status=ok" in done.stdout
    rows = read_rows(out)
    assert rows[0]["command"] == f"python {script} " + " ".join([*argv, "--out", str(out)])


def test_checkout_plot_script_is_a_shim_over_the_package():
    """benchmarks/e2e/plot.py keeps the documented command working: the package's parser answers."""
    done = subprocess.run(
        [sys.executable, "benchmarks/e2e/plot.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--out-dir" in done.stdout and "--prefix" in done.stdout


def test_few_layer_warmup_runs_one_dense_and_one_sparse_layer_then_restores_the_model():
    from lemo.bench.step import few_layers
    from lemo.integrations.transformers.patch import causal_lm, sparsity_state

    model = build_model("tiny", torch.device("cpu"), 64)
    lemo.apply(model, lemo.SparsityConfig(block_size=16))
    layers = list(causal_lm(model).model.layers)
    sparse = sparsity_state(model).layers
    seen = []
    hooks = [
        layer.register_forward_pre_hook(lambda m, a, i=i: seen.append(i)) for i, layer in enumerate(layers)
    ]
    ids = torch.randint(0, model.config.vocab_size, (1, 64))
    with few_layers(model):
        model(input_ids=ids, labels=ids).loss.backward()
    # the first layer, the first sparse one and the last (trimmed under lemo: kernels of its own)
    assert seen == [0, sparse[0], len(layers) - 1] and sparse[0] != 0
    base = causal_lm(model)
    assert list(base.model.layers) == layers and base.config.num_hidden_layers == len(layers)
    seen.clear()
    model(input_ids=ids, labels=ids)
    assert seen == list(range(len(layers)))
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("trim", [False, True])
def test_after_a_few_layer_warmup_the_host_pool_holds_a_whole_step(trim):
    """With offload, the few-layer warm-up stores two layers' inputs; `reserve_host_pool` grows the pool to a
    whole step's from them, so the timed step allocates (and, on a GPU, pins) no host memory."""
    from lemo.bench.step import few_layers, reserve_host_pool
    from lemo.integrations.transformers.patch import sparsity_state

    model = build_model("tiny", torch.device("cpu"), 128)
    lemo.apply(model, lemo.SparsityConfig(block_size=16, offload="cpu", trim_last_layer=trim))
    ids = torch.randint(0, model.config.vocab_size, (1, 128))
    labels = ids.clone()
    labels[:, :100] = -100  # a completion, so the trimmed last layer has few rows to score
    with few_layers(model):
        model(input_ids=ids, labels=labels).loss.backward()
    stats = sparsity_state(model).offloader.stats
    # layer 0's input, the first sparse layer's kept rows, the last layer's input
    assert len(stats.step_sizes) == 3 and stats.step_sizes[0] > stats.step_sizes[1]
    reserve_host_pool(model, torch.device("cpu"))
    reserved = stats.pool_bytes
    assert reserved > sum(stats.step_sizes)
    model(input_ids=ids, labels=labels).loss.backward()
    assert stats.pool_bytes == reserved and len(stats.step_sizes) == model.config.num_hidden_layers


def test_bench_with_a_few_layer_warmup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--shape", "tiny", "--lengths", "128", "--configs", "lemo", "--steps", "1"]
    assert main([*argv, "--warmup", "1", "--warmup-layers", "few", "--out", "x.csv"]) == 0
    [row] = read_rows(tmp_path / "x.csv")
    assert row["status"] == "ok" and float(row["median_step_s"]) > 0


@pytest.mark.slow
def test_bench_under_torchrun_shards_the_model_and_writes_one_row_per_config(tmp_path):
    import os

    out = tmp_path / "fsdp.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "lemo",
    ]
    cmd += ["bench", "--shape", "tiny", "--lengths", "128", "--configs", "exact", "lemo-random+gc"]
    cmd += ["--steps", "1", "--warmup", "1", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = read_rows(out)
    assert [(r["config"], r["status"], r["world_size"]) for r in rows] == [
        ("exact", "ok", "2"),
        ("lemo-random+gc", "ok", "2"),
    ]  # rank 0 alone wrote them
    one = tmp_path / "one.csv"
    assert main(["bench", "--shape", "tiny", "--lengths", "128", "--configs", "exact", "--steps", "1",
                 "--warmup", "0", "--out", str(one)]) == 0  # fmt: skip
    [single] = read_rows(one)
    assert single["world_size"] == "1"
    # FSDP2 holds half of every sharded parameter per rank; the job's tokens per step double.
    assert float(rows[0]["weights_gib_per_gpu"]) < 0.6 * float(single["weights_gib_per_gpu"])
    assert float(rows[0]["model_tflop_per_step"]) == pytest.approx(2 * float(single["model_tflop_per_step"]))


def test_longest_search_under_torchrun_is_refused_with_the_way_out(monkeypatch, capsys):
    import lemo.bench.run as run
    from lemo.train.distributed import Dist

    monkeypatch.setattr(run, "join", lambda: (Dist(rank=0, world_size=2), torch.device("cpu")))
    with pytest.raises(SystemExit) as err:
        run.main(["--shape", "tiny", "--mode", "longest", "--configs", "exact"], prog="lemo bench")
    assert "run it without torchrun" in str(err.value.code)


def test_allocator_settings_from_the_environment_go_into_the_command_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    argv = ["--shape", "tiny", "--lengths", "128", "--configs", "lora", "--steps", "1", "--warmup", "0"]
    assert main(["bench", *argv, "--out", "x.csv"]) == 0
    [row] = read_rows(tmp_path / "x.csv")
    assert row["command"].startswith("PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True lemo bench ")


def test_the_default_config_is_the_librarys_default():
    """`default+gc` (and its Liger twin's lemo part) applies SparsityConfig() as it is, with the run's keep ratio
    and backend: the benchmark's name for what a user gets."""
    from lemo.bench.configs import configure
    from lemo.integrations.transformers.patch import sparsity_state
    from lemo.testing import tiny_model, with_lora

    model = with_lora(tiny_model("llama", layers=4))
    configure(model, "default+gc", keep_ratio=SparsityConfig().keep_ratio, backend="reference")
    got = sparsity_state(model).config
    want = dataclasses.replace(SparsityConfig(), backend="reference")
    assert got == want


def test_a_dense_tail_config_keeps_every_block_whatever_the_runs_keep(tmp_path, monkeypatch):
    """`default-copy3-tail+offload` times a step of `--dense-tail`'s last steps: its own keep 1.0 wins over the
    run's --keep-ratio, in the applied config and in the row, and it is the copy-tier config with offload on."""
    from lemo.bench.configs import configure
    from lemo.integrations.transformers.patch import sparsity_state
    from lemo.testing import tiny_model, with_lora

    model = with_lora(tiny_model("llama", layers=4))
    configure(model, "default-copy3-tail+offload", keep_ratio=0.5, backend="reference")
    got = sparsity_state(model).config
    want = dataclasses.replace(
        SparsityConfig(), backend="reference", keep_ratio=1.0, copy_plain_text=True, offload="cpu"
    )
    assert got == want
    monkeypatch.chdir(tmp_path)
    argv = [
        "--shape",
        "tiny",
        "--lengths",
        "128",
        "--configs",
        "default-copy3+offload",
        "default-copy3-tail+gc",
    ]
    assert (
        main(["bench", *argv, "--keep-ratio", "0.5", "--steps", "1", "--warmup", "0", "--out", "x.csv"]) == 0
    )
    assert [(r["config"], r["keep_ratio"]) for r in read_rows(tmp_path / "x.csv")] == [
        ("default-copy3+offload", "0.5"),
        ("default-copy3-tail+gc", "1.0"),
    ]
