"""Dense LoRA on suite rows on the CPU, as the GPU suite trains it at small size: r8 on q/k/v/o, fp32, lr 5e-4,
one prompt/completion row a step with the loss on the completion. Shared by the CPU probes that train briefly
and then score the adapter's answers with lemo.eval.capability (first_token_probe.py, answer_errors_probe.py)."""

from __future__ import annotations

import time
from typing import Any

import torch


def train_dense_lora(
    model_dir: Any, tok: Any, rows: list[dict], log_every: int = 10, base: Any = None
) -> tuple[Any, float]:
    """The SmolLM2 at `model_dir` (or the loaded `base`, e.g. with the suite's YaRN) with a fresh LoRA trained one
    step per row; (model in eval mode, last loss). Every `log_every` steps it prints the loss, seconds a step and
    the time left (a 2K step takes seconds)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = base if base is not None else AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(model, lora).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    loss = torch.tensor(float("nan"))
    t0 = time.perf_counter()
    for i, r in enumerate(rows, 1):  # one row a step, the loss on the completion (the questions and answers)
        prompt, completion = tok.encode(r["prompt"]), tok.encode(r["completion"])
        ids = torch.tensor([prompt + completion])  # [1, T]
        labels = torch.tensor([[-100] * len(prompt) + completion])  # [1, T]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if log_every and (i % log_every == 0 or i == len(rows)):
            per = (time.perf_counter() - t0) / i
            print(
                f"step {i}/{len(rows)}: loss {loss.item():.3f}, {per:.1f} s a step, {per * (len(rows) - i):.0f} s left",
                flush=True,
            )
    return model.eval(), loss.item()
