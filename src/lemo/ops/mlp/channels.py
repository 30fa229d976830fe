"""MLP variants for sparse layers (docs/design.md section 1, step 6).

`channel_sparse_mlp` is the artifact's Llama MLP: an exact SwiGLU forward whose backward keeps only the
top `keep` fraction of intermediate channels (scored by activation norm over tokens). Only those channels'
activations are saved, so the stored MLP activations shrink to `keep` of dense; the input gradient is
approximate (dropped channels contribute zero). MLP weights must be frozen: no weight gradient is formed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class _ChannelSparseMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down, keep):  # x [N, d]; w_gate/w_up [I, d]; w_down [d, I]
        g = x @ w_gate.t()  # [N, I]
        u = x @ w_up.t()  # [N, I]
        a = F.silu(g)  # [N, I]
        out = (a * u) @ w_down.t()  # [N, d]
        score = a.float().norm(dim=0) + u.float().norm(dim=0)  # [I]
        n_keep = max(1, math.ceil(keep * score.shape[0] - 1e-9))
        idx = torch.topk(score, n_keep).indices.sort().values  # [k]
        ctx.save_for_backward(g[:, idx], u[:, idx], idx, w_gate, w_up, w_down)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # grad_out [N, d]
        g, u, idx, w_gate, w_up, w_down = ctx.saved_tensors  # g, u [N, k]
        sig = torch.sigmoid(g)
        a = g * sig  # silu
        grad_c = grad_out @ w_down[:, idx]  # [N, k]
        grad_g = grad_c * u * (sig * (1 + g * (1 - sig)))  # d silu(g)/dg = sig * (1 + g (1 - sig))
        grad_u = grad_c * a
        grad_x = grad_g @ w_gate[idx] + grad_u @ w_up[idx]  # [N, d]
        return grad_x, None, None, None, None


def channel_sparse_mlp(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, keep: float
) -> torch.Tensor:
    """SwiGLU MLP `down(silu(gate(x)) * up(x))` with a channel-sparse backward.

    Args:
        x: [..., d]; w_gate, w_up: [I, d]; w_down: [d, I] (frozen); keep: fraction of channels in (0, 1].
    Returns:
        [..., d], exactly the dense forward.
    """
    for w in (w_gate, w_up, w_down):
        if w.requires_grad:
            raise ValueError(
                "mlp='channels' needs frozen MLP weights (it forms no weight gradient); "
                "freeze the MLP or use mlp='dense' or mlp='tokens'."
            )
    shape = x.shape
    out = _ChannelSparseMLP.apply(x.reshape(-1, shape[-1]), w_gate, w_up, w_down, keep)  # [N, d]
    return out.view(shape)
