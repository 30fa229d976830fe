"""What a caller of the segmented LM head + cross-entropy sees, written once for both backends.

A backend only computes the summed loss over the scored rows (`SummedLoss`). The arguments, the input checks and
the divisor live here, so the reference and the Triton kernel cannot drift apart in what they accept or divide by.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SummedLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, int, int], torch.Tensor]
"""(hidden [N, d], weight [V, d], bias [V] or None, labels [N], chunk, ignore_index) -> fp32 sum over scored rows."""


def mean_loss(summed_loss: SummedLoss) -> Callable[..., torch.Tensor]:
    """The public loss function of one backend, from that backend's summed loss."""

    def segmented_cross_entropy(
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        chunk: int = 2048,
        ignore_index: int = -100,
        num_items: int | torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy of `hidden @ weight.T (+ bias)` against already shifted `labels`.

        Args:
            hidden: [N, d] final hidden states (after the final norm).
            weight: [V, d] LM-head weight; bias: optional [V].
            labels: [N] target ids, `ignore_index` where nothing is scored.
            chunk: rows per segment (bounds the extra memory to one [chunk, V] of logits).
            num_items: divisor (HF's `num_items_in_batch` for gradient accumulation); default: scored rows.

        Returns:
            scalar fp32 loss, equal to HF's causal-LM loss on the same inputs; differentiable with respect to
            hidden, weight and bias.
        """
        _check_inputs(hidden, weight, labels, chunk)
        total = summed_loss(hidden, weight, bias, labels, chunk, ignore_index)
        # An autograd division on the device: no host synchronisation for the count, and the backends' backward
        # receive the gradient of the sum.
        return total / _denominator(labels, ignore_index, num_items, hidden.device)

    return segmented_cross_entropy


def _check_inputs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> None:
    if hidden.dim() != 2 or labels.shape != hidden.shape[:1] or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"expected hidden [N, d], weight [V, d], labels [N]; got {tuple(hidden.shape)}, "
                         f"{tuple(weight.shape)}, {tuple(labels.shape)}.")  # fmt: skip
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be a positive number of rows.")


def _denominator(
    labels: torch.Tensor, ignore_index: int, num_items: int | torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """`num_items` when given, else the number of scored rows; fp32 on `device`."""
    if num_items is None:
        return (labels != ignore_index).sum().to(device=device, dtype=torch.float32)
    return torch.as_tensor(num_items, device=device).to(torch.float32)
