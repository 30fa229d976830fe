"""The plan as a table, and what to change when it does not fit (each suggestion is planned, not guessed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lemo.plan.memory import layer_rows
from lemo.plan.saved import attention_sdpa, backend, tile_attention

if TYPE_CHECKING:
    from lemo.config import PlanConfig
    from lemo.plan.core import Plan

TILE = 8192  # the tile suggested when the MLP working set sets the peak


def _settings(p: Plan) -> list[str]:
    c, s = p.config, p.config.sparsity
    lines = [
        f"{p.shape.name}: T={c.seq_len} x batch {c.batch_size}, LoRA r={c.lora.rank} on {','.join(c.lora.targets)}, "
        f"{c.dtype} on {c.device}, checkpointing {'on' if c.checkpointing else 'off'}"
    ]
    if c.world_size > 1:
        per_node = c.ranks_per_node or c.world_size
        lines.append(
            f"FSDP2 over {c.world_size} ranks ({per_node} per node): GPU figures are per GPU, host per node"
        )
    if getattr(c, "liger", False):
        lines.append("Liger-Kernel's RMSNorm, SwiGLU and RoPE" + ("" if c.sparse else ", and its fused loss"))
    if not c.sparse:
        lines.append("token elimination off, the model's own loss (plain LoRA)")
        return lines
    layers = s.resolve_layers(p.shape.layers)
    where = f"layers {layers[0]}-{layers[-1]}" if layers else "no layer"
    if getattr(s, "elimination", "forward") == "backward":
        # mlp, shared_selection and loss_tokens do not apply: every row runs every layer, the loss sees them all.
        lines.append(
            f"backward elimination on {where}: every row runs the forward, the backward recomputes "
            f"{p.kept_fraction:.1%} of rows"
        )
        lines.append(f"kept rows: {s.describe_selection()}; loss on every labelled position")
    else:
        lines.append(
            f"elimination on {where} (kept {p.kept_fraction:.1%} of rows), mlp={s.mlp}, "
            f"{'shared' if s.shared_selection else 'per-layer'} selection, loss on {s.loss_tokens} positions"
        )
        lines.append(f"kept blocks: {s.describe_selection()}")
    if s.dense_tail > 0:
        lines.append(
            f"dense tail: the last {s.dense_tail:.0%} of the steps keep every block; the peak and step below are "
            "theirs (--dense-tail 0: elimination's in every step)"
        )
    lines.append(
        (f"segmented loss (chunk {s.loss_chunk})" if s.segmented_loss else "the model's own loss")
        + f", offload={s.offload}, tile_tokens={s.tile_tokens}"
        + (", tiled attention" if getattr(s, "tile_attention", False) else "")
        + f", attention {_kernel(p)}"
    )
    last = layer_rows(p.shape, c)[-1]
    if last.trimmed:
        lines.append(f"last layer trimmed to the {last.attn_rows} scored rows (K/V of every row)")
    return lines


def _kernel(p: Plan) -> str:
    """Which kernel runs lemo's layer attention, by the layers' rows (`attention_kernel`)."""
    rows = {r.attn_rows for r in layer_rows(p.shape, p.config) if r.sparse or tile_attention(p.config)}
    sdpa = {attention_sdpa(p.shape, p.config, n) for n in rows}
    if not rows:
        return "by the model's own"
    if sdpa == {True} or backend(p.config) == "reference":
        return "by SDPA"
    return "by lemo's kernel" if sdpa == {False} else "by SDPA up to 128K rows, lemo's kernel past them"


def format_plan(p: Plan) -> str:
    out = ["lemo plan  " + _settings(p)[0], *("           " + line for line in _settings(p)[1:])]
    out.append(f"GPU peak (allocated)     {p.gpu_peak_gib:8.2f} GiB   at {p.phase}")
    shown = [
        (name, gib) for name, gib in sorted(p.breakdown_gib.items(), key=lambda kv: -kv[1]) if gib >= 0.005
    ]
    width = max([30, *(len(name) + 1 for name, _ in shown)])
    out.extend(f"  {name:<{width}}{gib:8.2f} GiB" for name, gib in shown)
    need = f"GPU need (+{p.config.margin:.1%} headroom) {p.gpu_need_gib:6.2f} GiB"
    if p.on_cpu:
        out.append(f"{need} on no GPU: a CPU run keeps the whole step in host memory")
    else:
        out.append(f"{need} of {p.gpu_cap_gib:.1f} GiB: {'fits' if p.fits_gpu else 'DOES NOT FIT'}")
    if p.host_gib or p.config.sparsity.offload == "cpu" or p.on_cpu:
        what = "host (the whole step)  " if p.on_cpu else "host (pinned offload)  "
        out.append(
            f"{what}  {p.host_need_gib:8.2f} GiB   of {host_cap_text(p)}: {'fits' if p.fits_host else 'DOES NOT FIT'}"
        )
    out.append(verdict(p))
    tokens = p.config.seq_len * p.config.batch_size
    out.append(f"step time (H200 rates)   {p.step_s:8.2f} s     {tokens / p.step_s:,.0f} tokens/s")
    if p.copy_s:
        out.append(
            f"  host copies            {p.copy_s:8.2f} s each way, overlapped with {p.compute_s:.2f} s compute"
        )
    if p.advice:
        out.append("advice:")
        out.extend(f"  - {a}" for a in p.advice)
    return "\n".join(out)


def host_cap_text(p: Plan) -> str:
    """The host cap with its source, so a verdict made against the planning machine's RAM says so."""
    from lemo.plan.core import LOCAL_HOST

    if p.host_cap_gib is None:
        return "unknown host memory (pass --host-gib N, the target machine's)"
    if p.host_source == LOCAL_HOST:
        return f"{p.host_cap_gib:.1f} GiB {LOCAL_HOST} (pass --host-gib N for the machine that will run it)"
    return f"{p.host_cap_gib:.1f} GiB ({p.host_source})"


def shortfalls(p: Plan) -> list[str]:
    """What is short, each with its figures: the GPU, the host, both, or nothing."""
    out = []
    if not p.fits_gpu:
        out.append(f"GPU memory: {p.gpu_need_gib:.1f} GiB needed, cap {p.gpu_cap_gib:.1f} GiB (--gpu-gib)")
    if not p.fits_host:
        pool = "for the whole step" if p.on_cpu else "pinned for offload"
        out.append(f"host memory: {p.host_need_gib:.1f} GiB needed {pool}, only {host_cap_text(p)}")
    return out


def _short(p: Plan) -> str:
    """`shortfalls` in a few words, for an advice line."""
    from lemo.plan.core import LOCAL_HOST

    out = [] if p.fits_gpu else [f"GPU {p.gpu_need_gib:.1f} > {p.gpu_cap_gib:.1f} GiB"]
    if not p.fits_host:
        where = LOCAL_HOST if p.host_source == LOCAL_HOST else f"({p.host_source})"
        out.append(f"host {p.host_need_gib:.1f} > {p.host_cap_gib:.1f} GiB {where}")
    return ", ".join(out)


def verdict(p: Plan) -> str:
    """One line that judges the run and names what is short (`lemo plan` exits 1 when it does not fit)."""
    if p.fits:
        unknown = p.host_cap_gib is None and p.host_need_gib > 0
        return "verdict: fits" + (
            ", if the host has the memory above (pass --host-gib N to check)" if unknown else ""
        )
    return "verdict: DOES NOT FIT, short of " + "; and ".join(shortfalls(p))


def _candidates(c: PlanConfig) -> list[tuple[str, dict]]:
    s = c.sparsity
    out: list[tuple[str, dict]] = []
    if not c.checkpointing:
        out.append(
            ("turn on gradient checkpointing (--gradient-checkpointing)", {"gradient_checkpointing": True})
        )
    if not getattr(c, "liger", True):
        out.append(("use Liger-Kernel's fused kernels (--liger; pip install 'lemo[liger]')", {"liger": True}))
    if not c.sparse:
        out.append(
            (
                "use lemo (drop --no-sparse; --sparse-layers none keeps it exact with the segmented loss)",
                {"sparse": True, "gradient_checkpointing": True},
            )
        )
        return out
    if not s.segmented_loss:
        out.append(("turn on the segmented loss (--segmented-loss)", {"sparsity": {"segmented_loss": True}}))
    if getattr(s, "attention_kernel", "lemo") != "lemo":
        out.append(
            (
                "run lemo's attention kernel, which needs no copies of grouped K/V heads (--attention-kernel lemo)",
                {"sparsity": {"attention_kernel": "lemo"}},
            )
        )
    if not getattr(s, "trim_last_layer", True):
        out.append(
            (
                "trim the last layer to the scored rows (--trim-last-layer)",
                {"sparsity": {"trim_last_layer": True}},
            )
        )
    if s.offload == "none":
        out.append(
            ("offload stored layer inputs to host memory (--offload cpu)", {"sparsity": {"offload": "cpu"}})
        )
    if s.dense_tail > 0:
        # the tail's steps keep every block and set the peak; without them every step has elimination's
        text = "drop the dense tail (--dense-tail 0; plain-text perplexity then ends about 2% above dense LoRA's)"
        out.append((text, {"sparsity": {"dense_tail": 0.0}}))
    if s.tile_tokens == 0 and c.seq_len > TILE:
        out.append((f"tile the MLP (--tile-tokens {TILE})", {"sparsity": {"tile_tokens": TILE}}))
        if s.offload == "none":
            out.append(
                (
                    f"offload and tile (--offload cpu --tile-tokens {TILE})",
                    {"sparsity": {"offload": "cpu", "tile_tokens": TILE}},
                )
            )
    if hasattr(s, "tile_attention") and not s.tile_attention and c.seq_len > TILE:
        tile = s.tile_tokens or TILE
        out.append(
            (
                f"offload and tile the whole layer (--offload cpu --tile-tokens {tile} --tile-attention)",
                {"sparsity": {"offload": "cpu", "tile_tokens": tile, "tile_attention": True}},
            )
        )
    keep = s.keep_ratio if isinstance(s.keep_ratio, float) else max(s.keep_ratio)
    if s.sparse_layers != "none":
        for lower in (0.4, 0.25):
            if keep > lower:
                out.append(
                    (f"lower the keep ratio (--keep-ratio {lower})", {"sparsity": {"keep_ratio": lower}})
                )
                break
    return out


def advise(p: Plan, replan: Callable[[PlanConfig], Plan]) -> list[str]:
    """Changes that would make `p` fit, each with its planned peak; the longest T that fits as it is."""
    if p.fits:
        return []
    from lemo.plan.core import LOCAL_HOST, _with, longest_seq_len

    lines = []
    local_host_short = False
    for text, change in _candidates(p.config):
        q = replan(_with(p.config, **change))
        if q.gpu_peak_gib >= p.gpu_peak_gib and q.fits_host == p.fits_host:
            continue  # no help
        local_host_short |= not q.fits_host and q.host_source == LOCAL_HOST
        host = f", host {q.host_gib:.1f} GiB" if q.host_gib else ""
        # Say what is still short: on a small host, an offload that fits the GPU is refused for host RAM.
        status = "fits" if q.fits else "still too big: " + _short(q)
        lines.append(f"{text}: GPU {q.gpu_peak_gib:.1f} GiB{host}, {q.step_s:.1f} s/step ({status})")
    lines.sort(key=lambda line: not line.endswith("(fits)"))
    if local_host_short:
        lines.append(
            "the host figures are this machine's free RAM; pass --host-gib N for the one that will run it"
        )
    longest = longest_seq_len(p.config)
    if longest:
        lines.append(f"or shorten the rows: --seq-len {longest} is the longest that fits as configured")
    elif not lines:
        lines.append("not even 1024 tokens fit: use a larger GPU or a smaller model")
    if not p.fits_host:
        lines.insert(0, shortfalls(p)[-1])
    return lines
