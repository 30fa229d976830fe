"""Data-parallel `lemo finetune` over FSDP2: process group, sharding, rank-0 output, collective errors.

`torchrun --nproc-per-node N -m lemo finetune ...` starts N copies of the ordinary loop; this module is
everything they do differently (see docs/distributed.md):

- the process group comes from torchrun's environment (nccl on CUDA, gloo on CPU);
- every decoder layer, then the root, is wrapped with `fully_shard`, *after* LoRA and `lemo.apply`, so the
  frozen base stays in its load dtype and each rank holds 1/N of it; the LoRA parameters (fp32 under PEFT)
  and AdamW's state are sharded the same way;
- gradients are reduce-scattered as a SUM (divide factor 1): the loop weighs each rank's micro-batches by
  their share of the global batch's labelled tokens, so the sum is the gradient of one big batch;
- only rank 0 prints, draws the progress bar and writes metrics, config and the adapter.

Without torchrun (or with WORLD_SIZE=1) `init` returns a single-process `Dist` and nothing here runs.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

log = logging.getLogger(__name__)

# Phrases of timeouts only ("Timeout(ms)=" is in every NCCL work description, failed or not).
TIMEOUT_WORDS = ("timed out", "timing out", "operation timeout")
T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. `owns_group`: `init` created the process group (and `close` ends it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: int = 1800
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when absent)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE={raw!r} is not a number; launch with torchrun --nproc-per-node N."
        ) from None


def backend_for(device_type: str) -> str:
    """nccl for CUDA, gloo for CPU; an error naming the fix when this PyTorch build lacks it."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(
            "this PyTorch build has no torch.distributed, so it cannot run under torchrun; install a standard "
            "PyTorch wheel (pip install torch), or run one process without torchrun."
        )
    if device_type == "cuda":
        if not dist.is_nccl_available():
            raise RuntimeError(
                "multi-GPU training needs the NCCL backend, which this PyTorch build lacks; install a CUDA "
                "build of PyTorch (https://pytorch.org/get-started), or train on CPU with --device cpu (gloo)."
            )
        return "nccl"
    if not dist.is_gloo_available():
        raise RuntimeError(
            "distributed CPU training needs the gloo backend, which this PyTorch build lacks; install a "
            "standard PyTorch wheel (pip install torch), or run one process without torchrun."
        )
    return "gloo"


def init(device: str, timeout_s: int = 1800) -> tuple[Dist, str]:
    """Join the job torchrun started; returns the `Dist` and the device string this rank should use.

    `device` is --device: "auto" and "cuda" become this rank's GPU (cuda:LOCAL_RANK); "cpu" stays "cpu".
    A process group that already exists (a test, a notebook) is joined, not created.
    """
    import torch.distributed as dist

    world = launched_world_size()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Dist(timeout_s=timeout_s), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} asks for CUDA, but no GPU is visible; use --device cpu.")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {local_rank} has no GPU (this node has {torch.cuda.device_count()}); lower "
                "--nproc-per-node to the number of GPUs per node."
            )
        device = f"cuda:{local_rank}"  # one GPU per rank, whatever --device named
        torch.cuda.set_device(local_rank)
    else:
        device = "cpu"
    owns = False
    if not dist.is_initialized():
        backend = backend_for("cuda" if cuda else "cpu")
        for var in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
            if var not in os.environ:
                raise RuntimeError(
                    f"WORLD_SIZE={world} but {var} is not set; start multi-process runs with "
                    "torchrun --nproc-per-node N -m lemo finetune ..."
                )
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        owns = True
    ctx = Dist(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=dist.get_backend(),
        timeout_s=timeout_s,
        owns_group=owns,
    )
    return ctx, device


def finish(ctx: Dist) -> None:
    """Wait until every rank has finished its run, so none tears the group down while another is still in its
    last collective: a gloo rank left in one aborted at exit ("terminate called without an active exception")
    after a complete run, once in CI. Only on success: after an error the other ranks may never arrive."""
    import torch.distributed as dist

    if ctx.world_size > 1 and dist.is_initialized():
        dist.barrier()


def close(ctx: Dist) -> None:
    import torch.distributed as dist

    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def quiet_unless_main(ctx: Dist) -> Iterator[None]:
    """lemo's INFO logs on rank 0 only (N copies of every line help no one); errors still show everywhere."""
    logger = logging.getLogger("lemo")
    before = logger.level
    if not ctx.is_main:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of an HF causal LM (plain or PEFT), the units `fully_shard` wraps."""
    from lemo.integrations.transformers import causal_lm, spec_for

    base = causal_lm(model)
    try:
        spec = spec_for(base.config.model_type)
        return list(getattr(getattr(base, spec.decoder), spec.layers))
    except (ValueError, KeyError, AttributeError):
        pass  # an architecture lemo cannot patch can still be sharded when elimination is off
    inner = getattr(base, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            f"cannot find the decoder layers of {type(base).__name__} to shard; train it without torchrun."
        )
    return list(layers)


def shard(model: nn.Module, ctx: Dist, device: str) -> nn.Module:
    """`fully_shard` each decoder layer, then the root (embeddings, final norm, LM head), in place.

    Call it after LoRA and `lemo.apply`: both only set instance attributes and hooks, which the FSDP class swap
    keeps, and the sparse layer forward reads its weights at call time, when FSDP has all-gathered them.
    No MixedPrecisionPolicy: every parameter computes in its own dtype, as on one GPU (bf16 base, fp32 LoRA).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    # FSDP2 warns when a layer returns a view, since an in-place op on it would skip the pre-backward hook. Every
    # consumer of a decoder layer's output in the supported models (the next layer's norm and residual add, the
    # final norm) is out of place, and lemo's in-place residual is off under FSDP2 (strategy.py); the tests compare
    # every gradient with one process.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(torch.device(device).type, (ctx.world_size,))
    layers = decoder_layers(model)
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            # A sum, not FSDP's default mean: the loop already weighs each rank's loss by its share of the
            # global batch, so the summed gradient is one big batch's (and 2 ranks add exactly what one
            # process accumulating two micro-batches adds). Forced to a plain SUM collective: gloo has no
            # PREMUL_SUM, which a divide factor would otherwise use.
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)
    log.info(
        "FSDP2: %d decoder layers + root sharded over %d ranks (%s)", len(layers), ctx.world_size, ctx.backend
    )
    return model


def all_sum(value: float, ctx: Dist, device: str) -> float:
    """Sum of a Python number over ranks (itself with one process)."""
    return _all_reduce(value, ctx, device, "SUM")


def all_max(value: float, ctx: Dist, device: str) -> float:
    """Largest value of a Python number over ranks (itself with one process)."""
    return _all_reduce(value, ctx, device, "MAX")


def _all_reduce(value: float, ctx: Dist, device: str, op: str) -> float:
    if not ctx.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return float(t.item())


def any_rank(flag: bool, ctx: Dist, device: str) -> bool:
    """True on every rank when it is true on one (a Ctrl-C, a NaN loss): all ranks then act together."""
    return all_sum(1.0 if flag else 0.0, ctx, device) > 0


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def run_on_main(ctx: Dist, device: str, fn: Callable[[], T]) -> T | None:
    """`fn()` on rank 0 only (file system changes, cache fills), the others waiting for it. When it raises, every
    rank raises, the others with rank 0's message, instead of hanging at the next collective until the timeout."""
    err: Exception | None = None
    result = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as e:
            err = e
    if ctx.enabled:
        import torch.distributed as dist

        message = [f"{type(err).__name__}: {err}" if err is not None else None]
        dist.broadcast_object_list(message, src=0, device=torch.device(device))
        if err is None and message[0] is not None:
            raise RuntimeError(f"rank 0 stopped: {message[0]}")
    if err is not None:
        raise err
    return result


def full_trainable_state(model: nn.Module, ctx: Dist) -> dict[str, torch.Tensor]:
    """Every trainable tensor, unsharded, as CPU tensors on rank 0 (empty on other ranks). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=opts)


def save_adapter(model: nn.Module, out_dir: Path, ctx: Dist) -> Path:
    """The PEFT adapter (plus extra_trainable.safetensors for unfrozen norms/embeddings), written by rank 0
    from the gathered full tensors: the same files a single-process run writes. Collective."""
    from safetensors.torch import save_file

    state = full_trainable_state(model, ctx)
    if ctx.is_main:
        model.save_pretrained(out_dir, state_dict=state)
        extra = {n: t.contiguous() for n, t in state.items() if "lora_" not in n}
        if extra:
            save_file(extra, str(out_dir / "extra_trainable.safetensors"))
    barrier(ctx)
    return out_dir


def is_timeout(err: BaseException) -> bool:
    import torch.distributed as dist

    text = str(err).lower()
    timed_out = any(w in text for w in TIMEOUT_WORDS)
    return timed_out and (
        isinstance(err, dist.DistError) or "nccl" in text or "gloo" in text or "collective" in text
    )


@contextmanager
def explain_collective_errors(ctx: Dist) -> Iterator[None]:
    """Turn a collective timeout (NCCL watchdog, gloo) into an error that says what usually causes it."""
    try:
        yield
    except Exception as err:
        if not (ctx.enabled and is_timeout(err)):
            raise
        raise RuntimeError(
            f"rank {ctx.rank}: a collective operation timed out after {ctx.timeout_s} s ({str(err).splitlines()[0]}). "
            "Usually another rank stopped or fell behind: look in every rank's log for the first error (out of "
            "memory, a bad file, a Ctrl-C). If one step or checkpoint really takes longer (very long rows, slow "
            "shared storage), raise the limit with --dist-timeout SECONDS; then continue with --resume."
        ) from err
