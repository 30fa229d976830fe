"""FSDP2 data parallelism (lemo.train.distributed): 2 CPU processes over gloo against one process.

One `mp.spawn` of 2 ranks runs every in-process check (steps on two architectures, apply before/after
fully_shard, keep_ratio=1 against dense, a real gloo timeout) and writes what it saw; the references are computed
here, in the test process. The end-to-end tests launch `torchrun -m lemo finetune` itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from lemo.config import SparsityConfig
from lemo.integrations.transformers import apply
from lemo.testing import assert_close, tiny_model, with_lora
from lemo.train import distributed
from lemo.train.checkpoint import load_checkpoint
from lemo.train.data import DataOrder
from lemo.train.distributed import Dist
from lemo.train.distributed_checkpoint import check_world_size
from lemo.train.loop import _accumulate, _accumulate_dist

REPO = Path(__file__).resolve().parents[2]
T = 128
# Oracle scores, no random blocks: the selection depends on the row alone, so ranks and one process agree.
SPARSE = dict(block_size=16, keep_ratio=0.5, random_fraction=0.0)
CASES = {  # name: (arch, sparsity, apply after fully_shard, gradient checkpointing, base dtype)
    "llama": ("llama", SPARSE, False, False, torch.float32),
    "qwen2": ("qwen2", SPARSE, False, False, torch.float32),
    "llama-apply-after-shard": ("llama", SPARSE, True, False, torch.float32),
    "llama-keep-1": ("llama", {**SPARSE, "keep_ratio": 1.0}, False, False, torch.float32),
    "qwen2-checkpointing": ("qwen2", SPARSE, False, True, torch.float32),
    "llama-bf16-base": ("llama", SPARSE, False, False, torch.bfloat16),  # fp32 LoRA beside it, one unit
    # the memory stack of docs/longest.md: host offload (reentrant-style recompute) and tiling under FSDP2
    "llama-offload-tiled": (
        "llama",
        {**SPARSE, "offload": "cpu", "tile_tokens": 48, "tile_attention": True},
        False,
        False,
        torch.float32,
    ),
}


def _rows() -> list[dict[str, torch.Tensor]]:
    """Two rows of one global batch; the second has fewer labels, so the token weighting matters."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (2, T), generator=gen)  # [2, T]
    labels = ids.clone()
    labels[1, : T // 3] = -100  # a prompt: only the rest is trained on
    return [
        {
            "input_ids": ids[i : i + 1],  # [1, T]
            "labels": labels[i : i + 1],
            "attention_mask": torch.ones(1, T, dtype=torch.long),
            "position_ids": torch.arange(T)[None],
        }
        for i in range(2)
    ]


def _model(
    arch: str, sparsity: dict | None, *, inplace: bool = True, checkpointing=False, dtype=torch.float32
):
    model = with_lora(tiny_model(arch, layers=4, dtype=dtype))  # PEFT keeps LoRA in fp32 beside a bf16 base
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if sparsity is not None:
        apply(model, SparsityConfig(**sparsity, inplace_residual=inplace))
    return model.train()


def _total(rows) -> int:
    return sum(int((r["labels"][:, 1:] != -100).sum()) for r in rows)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    import torch.distributed as dist

    ctx, device = distributed.init("cpu", timeout_s=60)
    rows = _rows()
    for name, (arch, sparsity, after, checkpointing, dtype) in CASES.items():
        # Under FSDP2 the residual add is out of place (the loop does the same, see loop.py).
        model = _model(
            arch, None if after else sparsity, inplace=False, checkpointing=checkpointing, dtype=dtype
        )
        distributed.shard(model, ctx, device)
        if after:
            apply(model, SparsityConfig(**sparsity, inplace_residual=False))
        loss = _accumulate_dist(model, [rows[rank]], torch.device(device), _total(rows), ctx)
        grads = {n: p.grad.full_tensor() for n, p in model.named_parameters() if p.requires_grad}
        if rank == 0:
            torch.save({"loss": loss, "grads": grads}, Path(out) / f"{name}.pt")
    # A real collective timeout: rank 1 never joins the all-reduce on a group with a 2 s limit.
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=2))
    if rank == 0:
        short = Dist(rank=0, world_size=world, timeout_s=2)
        try:
            with distributed.explain_collective_errors(short):
                dist.all_reduce(torch.ones(1), group=group)
            message = "no error"
        except RuntimeError as err:
            message = str(err)
        (Path(out) / "timeout.txt").write_text(message)
    dist.barrier()
    distributed.close(ctx)


@pytest.fixture(scope="module")
def spawned(tmp_path_factory) -> Path:
    import socket

    out = tmp_path_factory.mktemp("spawned")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_rank_step_equals_one_process_step(spawned, name):
    """Loss and every LoRA gradient of one 2-rank step (a row per rank) equal one process accumulating both
    rows; with keep_ratio=1 the reference is the dense model (no lemo at all)."""
    arch, sparsity, _, checkpointing, dtype = CASES[name]
    got = torch.load(spawned / f"{name}.pt", weights_only=True)
    dense = sparsity["keep_ratio"] == 1.0
    # The reference runs as one process does by default: in-place residual, lemo off when nothing is dropped.
    reference = _model(arch, None if dense else sparsity, checkpointing=checkpointing, dtype=dtype)
    rows = _rows()
    loss = _accumulate(reference, rows, torch.device("cpu"))
    assert got["loss"] == pytest.approx(loss, rel=1e-6, abs=1e-6)
    expected = {n: p.grad for n, p in reference.named_parameters() if p.requires_grad}
    assert got["grads"].keys() == expected.keys()
    assert any(g.abs().max() > 0 for g in expected.values())
    for n, g in expected.items():
        assert_close(got["grads"][n], g, rtol=1e-5, atol=1e-7, name=n)


def test_a_collective_timeout_is_explained(spawned):
    message = (spawned / "timeout.txt").read_text()
    assert "timed out after 2 s" in message, message
    assert "--dist-timeout" in message and "every rank's log" in message


# ----------------------------------------------------------------------------------- no processes needed


def test_rank_slices_are_disjoint_and_cover_each_global_batch():
    order = DataOrder(10, seed=3)
    batches = order.batches(0, 6)
    for _ in range(4):
        drawn = next(batches)
        parts = [DataOrder.shard(drawn, r, 3) for r in range(3)]
        assert [i for p in parts for i in p] == drawn
        assert all(len(p) == 2 for p in parts)
    with pytest.raises(ValueError, match="--batch-size x --grad-accum x the number of ranks"):
        DataOrder.shard([1, 2, 3], 0, 2)


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, device = distributed.init("cpu")
    assert not ctx.enabled and ctx.is_main and device == "cpu"


def test_a_missing_backend_names_the_fix(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    monkeypatch.setattr(dist, "is_gloo_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"install a CUDA build of PyTorch.*--device cpu"):
        distributed.backend_for("cuda")
    with pytest.raises(RuntimeError, match=r"gloo backend.*pip install torch"):
        distributed.backend_for("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setattr(dist, "is_gloo_available", lambda: True)
    with pytest.raises(RuntimeError, match="torchrun --nproc-per-node N"):
        distributed.init("cpu")


def test_an_nccl_timeout_is_explained():
    """Simulated: the text NCCL's watchdog raises, as a DistBackendError."""
    import torch.distributed as dist

    ctx = Dist(rank=1, world_size=8, timeout_s=600)
    watchdog = (
        "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=812, OpType=_REDUCE_SCATTER_BASE, "
        "NumelIn=1048576, NumelOut=131072, Timeout(ms)=600000) ran for 600010 milliseconds before timing out."
    )
    timed_out = pytest.raises(RuntimeError, match="rank 1: a collective operation timed out after 600 s")
    with timed_out as info, distributed.explain_collective_errors(ctx):
        raise dist.DistBackendError(watchdog)
    assert "--dist-timeout" in str(info.value) and "--resume" in str(info.value)
    # Other errors pass through untouched, NCCL's own included (every work description has "Timeout(ms)=").
    with pytest.raises(ValueError, match="unrelated"), distributed.explain_collective_errors(ctx):
        raise ValueError("unrelated")
    other = "NCCL error: unhandled cuda error, WorkNCCL(SeqNum=3, OpType=ALLGATHER, Timeout(ms)=600000)"
    with (
        pytest.raises(dist.DistBackendError, match="unhandled cuda error"),
        distributed.explain_collective_errors(ctx),
    ):
        raise dist.DistBackendError(other)


def test_a_different_world_size_names_the_fix(tmp_path):
    meta = {"sharded": True, "world_size": 4, "step": 2, "path": tmp_path}
    with pytest.raises(ValueError, match=r"written by 4 process.*this run has 2.*--nproc-per-node 4"):
        check_world_size(meta, Dist(rank=0, world_size=2))
    with pytest.raises(ValueError, match="resume it with one process"):
        check_world_size({"step": 2, "path": tmp_path}, Dist(rank=0, world_size=2))
    folder = tmp_path / "step-0000002"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({**meta, "path": None, "sha256": {}}))
    with pytest.raises(ValueError, match="torchrun --nproc-per-node 4"):
        load_checkpoint(tmp_path)  # a one-process resume of a 4-rank checkpoint


# --------------------------------------------------------------------------------- torchrun, end to end


def _args(model_dir, data) -> list[str]:
    return [
        "finetune", "--model", str(model_dir), "--data", str(data), "--seq-len", "128", "--steps", "6",
        "--save-every", "2", "--lr", "0.01", "--warmup-steps", "0", "--block-size", "16", "--keep-ratio", "0.5",
        "--random-fraction", "0", "--no-progress",
    ]  # fmt: skip


def _torchrun(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.Popen(
        [*cmd, "-m", "lemo", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _run(args: list[str]) -> str:
    proc = _torchrun(args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, text_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "full"
    log = _run([*_args(tiny_model_dir, text_file), "--output-dir", str(out)])
    assert log.count("lemo finetune: ") == 1, "rank 1 printed too"  # the summary line, from rank 0 only
    return out


@pytest.mark.slow
def test_two_ranks_train_like_one_process_with_the_same_global_batch(
    uninterrupted, tiny_model_dir, text_file, tmp_path
):
    """--batch-size is per rank: 2 ranks x 1 row match 1 process x 1 row x --grad-accum 2, step for step."""
    from lemo.cli.__main__ import main

    one = tmp_path / "one"
    assert main([*_args(tiny_model_dir, text_file), "--grad-accum", "2", "--output-dir", str(one)]) == 0
    assert _losses(uninterrupted) == pytest.approx(_losses(one), rel=1e-5)
    a, b = _adapter(uninterrupted), _adapter(one)
    assert a.keys() == b.keys()
    for k in a:
        assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, name=k)
    meta = json.loads((uninterrupted / "checkpoints" / "step-0000006" / "meta.json").read_text())
    assert meta["sharded"] and meta["world_size"] == 2
    assert (uninterrupted / "adapter" / "adapter_config.json").is_file()  # a plain PEFT adapter


def _workers(pid: int) -> list[int]:
    """torchrun's children (its workers run in their own sessions, so a group kill misses them)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")  # Linux, as CI: without it the kill would miss the ranks
    return [int(p) for p in path.read_text().split()]


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_to_the_same_adapter(
    uninterrupted, tiny_model_dir, text_file, tmp_path
):
    out = tmp_path / "killed"
    args = [*_args(tiny_model_dir, text_file), "--output-dir", str(out)]
    proc = _torchrun(args)
    marker = out / "checkpoints" / "step-0000004"  # appears complete: the save renames it into place
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    for pid in [*_workers(proc.pid), proc.pid]:  # every rank dies at once, as on a preempted node
        with contextlib.suppress(ProcessLookupError):  # it already exited
            os.kill(pid, signal.SIGKILL)
    proc.communicate()
    assert marker.exists(), "the run died before its step-4 checkpoint"
    assert not (out / "adapter").exists(), "the kill came too late to test anything"
    log = _run([*args, "--resume"])
    assert "resuming at step" in log
    a, b = _adapter(uninterrupted), _adapter(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _losses(out) == _losses(uninterrupted)


@pytest.mark.slow
def test_nproc_starts_torchrun_itself_and_trains_like_it(uninterrupted, tiny_model_dir, text_file, tmp_path):
    from lemo.cli.__main__ import main

    out = tmp_path / "nproc"
    assert main([*_args(tiny_model_dir, text_file), "--nproc", "2", "--output-dir", str(out)]) == 0
    assert _losses(out) == _losses(uninterrupted)  # the same job as the torchrun line
    meta = json.loads((out / "checkpoints" / "step-0000006" / "meta.json").read_text())
    assert meta["sharded"] and meta["world_size"] == 2


def test_nproc_that_disagrees_with_torchrun_names_the_fix(monkeypatch):
    from lemo.config import FinetuneConfig
    from lemo.train.launch import wants_launch

    assert not wants_launch(FinetuneConfig())
    assert wants_launch(FinetuneConfig(nproc=2))
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not wants_launch(FinetuneConfig(nproc=2))  # already the torchrun job it would start
    with pytest.raises(ValueError, match="--nproc 4 but torchrun started 2 ranks"):
        wants_launch(FinetuneConfig(nproc=4))
    with pytest.raises(ValueError, match="--nproc 0 must be a positive number"):
        FinetuneConfig(nproc=0)
