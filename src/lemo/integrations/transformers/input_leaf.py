"""The embedding output as a leaf that requires grad, held by autograd all step for nothing (`free_input_leaf`).

transformers' `enable_input_require_grads` (PEFT calls it when it wraps a model with gradient checkpointing on,
and so does lemo's `enable_gradient_checkpointing`) makes the frozen embedding's output require grad, so that a
reentrant checkpoint of the first layer has an input in the graph. That output is a leaf: autograd's
AccumulateGrad node holds it until the step's graph is freed, and fills its `.grad`, as large, at the end of
backward, though nothing reads either. Where the layer inputs wait in host memory (offload), that is one
[B, T, d] hidden state kept on the GPU through the whole backward: 4 GiB at 512K on Llama-3-8B.

The hook below hands the decoder `leaf.detach() + anchor` instead, the anchor a fresh 0-dim zero that requires
grad: the same values, still requiring grad (a reentrant checkpoint still runs its backward), through an add
that saves nothing, so no node holds the embedding output once the first layer has stored its input. An
embedding whose weights train gives an output with a grad_fn, not a leaf, and is left alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def free_input_leaf(_module: nn.Module, _args: Any, out: Any) -> torch.Tensor | None:
    """Forward hook of the input embedding: its output, when a leaf that requires grad, as a node that does not
    keep it (None: the output as it is)."""
    if not (torch.is_tensor(out) and out.requires_grad and out.grad_fn is None and torch.is_grad_enabled()):
        return None
    anchor = torch.zeros(
        (), dtype=out.dtype, device=out.device, requires_grad=True
    )  # []: its gradient is dropped
    return out.detach() + anchor  # [B, T, d]: the same values; AddBackward saves neither input


class InputLeafHook:
    """The hook on `base`'s input embedding, kept the last of its forward hooks: `enable_input_require_grads`
    may be called after `lemo.apply` (a Trainer turns checkpointing on when training starts), and its hook must
    have made the leaf before this one frees it. `refresh` runs at the start of every forward."""

    def __init__(self, base: nn.Module) -> None:
        get = getattr(base, "get_input_embeddings", None)
        self.embedding = get() if get is not None else None
        self.handle = None
        self.refresh()

    def refresh(self) -> None:
        if self.embedding is None:
            return
        if self.handle is not None:
            self.handle.remove()
        self.handle = self.embedding.register_forward_hook(free_input_leaf)

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
