"""Fused LM head + cross-entropy in chunks: the loss and its gradients in one forward pass, never [N, V].

Per chunk of `chunk` rows:

    logits = hidden_c @ W^T (+ b)          one matrix product in the model dtype (bf16: fp32 accumulation inside)
    kernel: loss_i = lse_i - logit_{i,y}  fp32 online logsumexp over the vocabulary, one program per row,
            logits <- softmax - onehot    written in place, in the logits dtype (what autograd would hand the
                                          bf16 matmul in the reference's backward too)
    grad_hidden_c = dlogits @ W            [c, d]
    grad_W += dlogits^T @ hidden_c         only when the weight is trained

The chunk's logits buffer is then reused by the next chunk, so the extra memory is one [chunk, V] buffer plus
the [N, d] hidden gradient, instead of the reference's checkpointed fp32 [chunk, V] (and HF's full [N, V] in
fp32 several times over). Gradients are of the summed loss; the backward scales them by grad_out, the gradient
of the sum, which the division by the denominator (an autograd op on the device, contract.py) hands it, so no
host synchronisation is needed for the denominator. Ignored rows (`ignore_index`) add 0 and get 0 gradient.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lemo.ops._triton_reduce import interpreting as _interpreting
from lemo.ops._triton_reduce import rmax as _rmax
from lemo.ops._triton_reduce import rsum as _rsum
from lemo.ops.segmented_ce.contract import mean_loss


@triton.jit
def _ce_rows_kernel(
    LOGITS, LABELS, LOSS, V, s_row, ignore_index, BLOCK_V: tl.constexpr, WRITE_GRAD: tl.constexpr
):
    row = tl.program_id(0)
    base = LOGITS + row.to(tl.int64) * s_row
    y = tl.load(LABELS + row).to(tl.int32)
    offs = tl.arange(0, BLOCK_V)
    # First block peeled: it starts the running max and sum without -inf arithmetic.
    x = tl.load(base + offs, mask=offs < V, other=float("-inf")).to(tl.float32)  # [BV]
    m = _rmax(x, 0)
    s = _rsum(tl.exp(x - m), 0)
    for v0 in range(BLOCK_V, V, BLOCK_V):
        x = tl.load(base + v0 + offs, mask=v0 + offs < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, _rmax(x, 0))
        s = s * tl.exp(m - m_new) + _rsum(tl.exp(x - m_new), 0)
        m = m_new
    lse = m + tl.log(s)
    ignored = y == ignore_index
    target = tl.load(base + tl.where(ignored, 0, y)).to(tl.float32)
    tl.store(LOSS + row, tl.where(ignored, 0.0, lse - target))
    if WRITE_GRAD:
        keep = tl.where(ignored, 0.0, 1.0)
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + offs
            ok = cols < V
            x = tl.load(base + cols, mask=ok, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(cols == y, 1.0, 0.0)) * keep  # d(loss_i) / d(logits_i)
            tl.store(base + cols, g.to(LOGITS.dtype.element_ty), mask=ok)


def _rows_loss_(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, write_grad: bool
) -> torch.Tensor:
    """Per-row loss [n] fp32 of logits [n, V]; with write_grad, logits is overwritten by softmax - onehot."""
    n, V = logits.shape
    loss = torch.empty(n, dtype=torch.float32, device=logits.device)  # [n]
    if n == 0:
        return loss
    if _interpreting():
        block, launch = min(256, triton.next_power_of_2(V)), dict(num_warps=1)
    else:
        # 4K columns a step: 16 B per thread per load at 8 warps (bf16), and a 128K vocabulary in 32 steps.
        block, launch = min(4096, triton.next_power_of_2(V)), dict(num_warps=8)
    _ce_rows_kernel[(n,)](logits, labels, loss, V, logits.stride(0), ignore_index, BLOCK_V=block,
                          WRITE_GRAD=write_grad, **launch)  # fmt: skip
    return loss


class _FusedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk, ignore_index):
        N = hidden.shape[0]
        V = weight.shape[0]
        need_h = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        grads = need_h or need_w or need_b
        labels = labels.to(device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None  # [N, d]
        grad_w = (
            torch.zeros_like(weight) if need_w else None
        )  # [V, d]; accumulated in the weight dtype like autograd
        grad_b = torch.zeros(V, dtype=torch.float32, device=hidden.device) if need_b else None  # [V]
        buf = None
        for s in range(0, N, chunk):
            h = hidden[s : s + chunk]  # [c, d]
            c = h.shape[0]
            if buf is None or buf.shape[0] < c:
                buf = torch.empty(
                    min(chunk, N), V, dtype=hidden.dtype, device=hidden.device
                )  # [chunk, V], reused
            logits = buf[:c]  # [c, V]
            if bias is None:
                torch.mm(h, weight.t(), out=logits)
            else:
                torch.addmm(bias, h, weight.t(), out=logits)
            total += _rows_loss_(logits, labels[s : s + chunk], ignore_index, grads).sum()
            if need_h:
                torch.mm(logits, weight, out=grad_h[s : s + chunk])  # [c, d]
            if need_w:
                grad_w.addmm_(logits.t(), h)  # [V, d]
            if need_b:
                grad_b += logits.sum(0, dtype=torch.float32)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        factor = grad_out.float()  # d loss / d total: 1 / denominator times the caller's gradient
        gh = None if grad_h is None else grad_h * factor.to(grad_h.dtype)
        gw = None if grad_w is None else grad_w * factor.to(grad_w.dtype)
        gb = None if grad_b is None else (grad_b * factor).to(ctx.bias_dtype)
        return gh, gw, gb, None, None, None


def _summed_loss(hidden, weight, bias, labels, chunk: int, ignore_index: int) -> torch.Tensor:
    """The summed loss over the scored rows through the fused kernel; `contract.SummedLoss`."""
    hidden = hidden.contiguous()
    labels = labels.contiguous()
    if not torch.is_grad_enabled():
        return _FusedLinearCE.forward(_NoGradCtx(), hidden, weight, bias, labels, chunk, ignore_index)
    return _FusedLinearCE.apply(hidden, weight, bias, labels, chunk, ignore_index)


segmented_cross_entropy = mean_loss(_summed_loss)


class _NoGradCtx:
    """Stands in for autograd's ctx when no gradient is wanted: nothing is computed for the backward."""

    needs_input_grad = (False,) * 6

    def save_for_backward(self, *tensors: torch.Tensor | None) -> None:
        pass
