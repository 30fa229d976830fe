"""What the quality benchmarks share: the provenance of every CSV row, one timed fine-tune (and the adapters it
passes through on the way), and the pool of worker processes that runs several small trainings side by side on
one GPU."""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lemo.config import FinetuneConfig, SuiteConfig
from lemo.train.loop import FinetuneResult, finetune


def suite_from_json(text: str) -> SuiteConfig:
    """A probe's --suite: SuiteConfig knobs as one JSON object over a "preset" (default v2); a bad one is refused
    with the fix."""
    import json

    try:
        knobs = json.loads(text)
        return SuiteConfig.from_preset(knobs.pop("preset", "v2"), **knobs)
    except (ValueError, TypeError, AttributeError) as e:
        raise SystemExit(
            f"--suite {text!r}: {e}; pass a JSON object of SuiteConfig knobs, e.g. "
            '\'{"preset": "v10", "families": ["kv"]}\'.'
        ) from None


def setup_config(
    data: Path, seq_len: int, steps: int, full_steps: int, lr: float, sparsity: dict | None, **fields: Any
) -> FinetuneConfig:
    """The capability setup's fine-tune: YaRN x2, LoRA (the library's r8 q/k/v/o), gradient checkpointing,
    packed rows, warm-up a tenth of `full_steps` (so a run of fewer `steps` is the full run stopped early);
    `sparsity` None is dense LoRA. `fields` set or override the rest (seed, output_dir, ...)."""
    base = dict(
        data=[str(data)],
        data_mode="pack",
        seq_len=seq_len,
        steps=steps,
        lr=lr,
        warmup_steps=max(1, full_steps // 10),
        rope_scaling="yarn",
        rope_factor=2.0,
        sparse=sparsity is not None,
        sparsity=sparsity if sparsity is not None else {},
        gradient_checkpointing=True,
        save_every=0,
        progress=False,
    )
    return FinetuneConfig(**{**base, **fields})


def load_eval_model(adapter: Path | None) -> tuple[Any, Any]:
    """SmolLM2 with YaRN x2 (the setup's 16K) and `adapter` (None: untrained), on the GPU when there is one,
    in bf16 there: the model every capability benchmark evaluates, dense."""
    from lemo.assets import smollm2_dir
    from lemo.integrations.peft import load_adapter
    from lemo.integrations.transformers.loading import load_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    if adapter is not None:
        model = load_adapter(model, adapter).to(device)
    return model, tok


def timed_finetune(name: str, cfg: FinetuneConfig) -> tuple[FinetuneResult, float]:
    """Run `cfg`, print "name: loss first -> last in N s", return the result and the training seconds."""
    t0 = time.perf_counter()
    result = finetune(cfg)
    seconds = time.perf_counter() - t0
    print(f"{name}: loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {seconds:.0f} s", flush=True)
    return result, seconds


def snapshot_dir(run_dir: Path, step: int) -> Path:
    """Where `adapter_snapshots` puts the adapter after optimizer step `step` of the run in `run_dir`."""
    return run_dir / f"adapter-step-{step}"


@contextlib.contextmanager
def adapter_snapshots(run_dir: Path, steps: Iterable[int]) -> Iterator[dict[int, float]]:
    """Inside: `finetune` saves its PEFT adapter into `snapshot_dir(run_dir, N)` right after optimizer step N,
    for each N in `steps`; the dict yielded maps each saved N to the `time.perf_counter()` at which step N ended
    (before the save, so a later step pays for it).

    `lemo.train.loop` calls `kept_fractions(model, cfg, strategy)` once per optimizer step, after the optimizer
    and the scheduler stepped and before the next step draws anything: wrapping that name, in this process only,
    is a per-step hook without a callback parameter in the library (as suite_hooks.py wraps `apply`). The weights
    there are the ones a run of `--steps N` (same seed, warm-up and data) saves as its adapter; the suite's test
    checks it bitwise. Counting calls gives the step: the suite never resumes a training.
    """
    import lemo.train.loop as loop

    wanted, ended = set(steps), {}
    original = loop.kept_fractions
    calls = 0

    def kept_and_snapshot(model, cfg, strategy):
        nonlocal calls
        calls += 1
        if calls in wanted:
            ended[calls] = time.perf_counter()
            strategy.save_adapter(
                model, snapshot_dir(run_dir, calls)
            )  # every rank: FSDP gathers collectively
        return original(model, cfg, strategy)

    loop.kept_fractions = kept_and_snapshot
    try:
        yield ended
    finally:
        loop.kept_fractions = original


def provenance(argv: list[str] | None) -> dict[str, str]:
    """GPU, versions, commit (LEMO_COMMIT), time and the command line: what each results row records."""
    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "peft": md.version("peft"),
        "commit": os.environ.get("LEMO_COMMIT", "unknown"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
    }


# A 16K SmolLM2 suite job held up to 10.7 GiB of GPU memory (H100, 2026-12-06: the out-of-memory report of the
# v8 run, where 12 workers did not fit 80 GB; they fit an H200's 141 GB in earlier sessions).
JOB_GIB_16K = 11.0


def job_gib(seq_len: int) -> float:
    """GPU memory to reserve for one SmolLM2 training job at `seq_len`: the 16K job's measured peak, scaled
    linearly with the length (a guess: only 16K was measured), and never under 3 GiB. `--job-gib` overrides it."""
    return max(3.0, JOB_GIB_16K * seq_len / 16384)


def gpu_worker_cap(workers: int, gib_per_job: float) -> int:
    """`workers`, lowered to the jobs of `gib_per_job` the GPU's free memory holds, so that no job dies out of
    memory halfway (the v8 run lost 4 of 30). `nvidia-smi` reads it without a CUDA context in this process; with
    no NVIDIA GPU, `workers` as given."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        free_gib = int(out.stdout.split()[0]) / 1024  # the first GPU, the one the workers share
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return workers
    fit = max(1, int(free_gib // gib_per_job))
    if fit < workers:
        print(
            f"workers: {workers} -> {fit}: {free_gib:.0f} GiB free on the GPU holds {fit} jobs of about "
            f"{gib_per_job:.0f} GiB (--job-gib)",
            flush=True,
        )
    return min(workers, fit)


def run_workers(
    jobs: Sequence[str],
    command: Callable[[str], list[str]],
    workers: int,
    env: dict[str, str],
    on_done: Callable[[str, int, float], None],
    may_launch: Callable[[str], bool] = lambda _job: True,
) -> list[str]:
    """Run `command(job)` for every job, at most `workers` processes at once, in order.

    `on_done(job, returncode, seconds)` runs as each process ends (so a run cut short keeps what finished).
    A job that `may_launch` refuses (e.g. out of time) is not started, nor is any job after it; those jobs
    are returned.
    """
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < workers and may_launch(pending[0]):
            job = pending.pop(0)
            proc = subprocess.Popen(command(job), env={**os.environ, **env})
            running.append((job, proc, time.perf_counter()))
        if not running:
            break  # the next job may not launch and nothing runs: stop
        time.sleep(1)
        for item in list(running):
            job, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode:
                print(f"{job}: failed with exit code {proc.returncode}", flush=True)
            on_done(job, proc.returncode, time.perf_counter() - t0)
    return pending


def save_figure(fig, out: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path:
    """Lay out `fig` within `rect` (a figure legend may need the rest), write it to `out` at the figures'
    resolution, and free it: the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
