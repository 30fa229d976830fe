"""What a finished `lemo finetune` prints last: where its records are, what "kept" meant, and what to run next.

`make demo` ended at "adapter saved to runs/demo/adapter", with no pointer to metrics.jsonl or to a use of the
adapter, and with "kept=0.80" in the bar beside a keep ratio of 0.6 unexplained: "kept" averages the kept
fraction over all decoder layers, and the dense layers count as 1 (patch.mean_kept_fraction).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from lemo.config import FinetuneConfig


def kept_line(
    kept: float, kept_sparse: float | None, n_layers: int, n_sparse: int, keep_ratio: object
) -> str:
    """What the bar's kept=... meant in the run's last step."""
    line = (
        f'"kept" ({kept:.2f} in the last step) is the share of layer-tokens kept, over all {n_layers} layers, '
        "dense layers counting as 1"
    )
    if kept_sparse is None or n_sparse == 0:
        return line + "."
    return (
        line + f"; the {n_sparse} sparse layers kept {kept_sparse:.2f} (--keep-ratio {_ratio(keep_ratio)})."
    )


def _ratio(value: object) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def eval_command(cfg: FinetuneConfig, model_dir: str | None, adapter_dir: Path) -> str:
    """A `lemo eval` line that scores the adapter's held-out perplexity as the run did (same text, lengths and
    windows, so its number matches the run's "after" perplexity)."""
    words = ["lemo", "eval"]
    if model_dir:
        words += ["--model", str(model_dir)]
    words += ["--adapter", str(adapter_dir)]
    if cfg.eval_data:
        words += ["--data", *cfg.eval_data]
    words += [
        "--lengths",
        *(str(n) for n in (cfg.eval_lengths or [cfg.seq_len])),
        "--windows",
        str(cfg.eval_windows),
    ]
    if cfg.rope_scaling:
        words += ["--rope-scaling", cfg.rope_scaling, "--rope-factor", f"{cfg.rope_factor:g}"]
    return " ".join(shlex.quote(w) for w in words)


def next_steps(cfg: FinetuneConfig, out: Path, adapter_dir: Path, kept: str | None) -> list[str]:
    """The lines printed after the adapter is saved; the last one says what to run next.

    `kept` is `kept_line(...)` of a run with token elimination, None without. The embedded model (cfg.model
    None) needs no --model: `lemo eval` defaults to it too.
    """
    lines = [f"metrics of every step (loss, lr, tokens/s, peak memory, kept): {out / 'metrics.jsonl'}"]
    if kept:
        lines.append(kept)
    python = f"peft.PeftModel.from_pretrained(model, {str(adapter_dir)!r})"
    lines.append(
        f"next: evaluate the adapter with `{eval_command(cfg, cfg.model, adapter_dir)}`, or load it on the base "
        f"model in Python with {python}"
    )
    return lines
