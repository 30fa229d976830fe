"""The predictor networks: `Tower` (an MLP whose hidden units can be pruned) and `BlockPredictor` (one sparse
layer's Q- and K-side towers, from normed hidden states to a block score map). The design is in
`lemo.predictor.model`'s docstring."""

from __future__ import annotations

import math

import torch
from torch import nn

from lemo.config import PredictorConfig
from lemo.ops import informativeness


def _slice_linear(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    """A new Linear holding the kept output rows / input columns of `lin` (pruning)."""
    w = lin.weight.detach()  # [out, in]
    b = lin.bias.detach() if lin.bias is not None else None
    if rows is not None:
        w = w[rows]
        b = b[rows] if b is not None else None
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


class Tower(nn.Module):
    """in -> hidden -> mid -> out with ReLU between; counts dead (pre-ReLU <= 0) activations for pruning."""

    def __init__(self, in_dim: int, hidden: int, mid: int, out: int, bias: bool = False) -> None:
        super().__init__()
        self.l1 = nn.Linear(in_dim, hidden, bias=bias)
        self.l2 = nn.Linear(hidden, mid, bias=bias)
        self.l3 = nn.Linear(mid, out, bias=bias)
        self.track_deaths = False
        self._reset_counters()

    def _reset_counters(self) -> None:
        dev = self.l1.weight.device
        # Not persistent: counters are training-time bookkeeping, never part of a saved predictor. Integer, so
        # that casting the predictor to bf16 does not cast them (bf16 cannot count past 256 exactly).
        self.register_buffer(
            "dead1", torch.zeros(self.l1.out_features, dtype=torch.long, device=dev), persistent=False
        )
        self.register_buffer(
            "dead2", torch.zeros(self.l2.out_features, dtype=torch.long, device=dev), persistent=False
        )
        self.seen = 0

    @property
    def widths(self) -> tuple[int, int]:
        return self.l1.out_features, self.l2.out_features

    def forward(
        self, e: torch.Tensor, pool_dim: int | None = None, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """e [..., in] -> [..., out]; with `pool_dim`, the max over that dim is taken before the last layer.

        `valid` (broadcastable to the features, 1 for real tokens, 0 for padding) zeroes padded tokens'
        features before the max: features are ReLU outputs (>= 0), so a zero never wins it.
        """
        a1 = self.l1(e)  # [..., hidden] pre-ReLU
        a2 = self.l2(torch.relu(a1))  # [..., mid] pre-ReLU
        if self.track_deaths and self.training:
            with torch.no_grad():
                self.dead1 += (a1 <= 0).reshape(-1, a1.shape[-1]).sum(0)  # [hidden]
                self.dead2 += (a2 <= 0).reshape(-1, a2.shape[-1]).sum(0)  # [mid]
                self.seen += a1.numel() // a1.shape[-1]
        h = torch.relu(a2)  # [..., mid]
        if pool_dim is not None:
            if valid is not None:
                h = h * valid  # with biases a zero input token would not give zero features
            h = h.amax(dim=pool_dim)  # [..., mid] without the pooled dim
        return self.l3(h)  # [..., out]

    def death_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(self.seen, 1)
        return self.dead1.double() / n, self.dead2.double() / n

    def prune(self, threshold: float, min_units: int) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Remove units whose death ratio is >= threshold (never below `min_units` per width).

        Returns, per parameter name (relative to this tower), the (dim, kept index) slicings applied, so that
        the caller can slice optimizer state the same way. Counters are reset.
        """
        if self.seen == 0:
            return {}
        r1, r2 = self.death_ratios()
        keep1, keep2 = _kept_units(r1, threshold, min_units), _kept_units(r2, threshold, min_units)
        changed: dict[str, list[tuple[int, torch.Tensor]]] = {}
        if keep1 is not None or keep2 is not None:
            self.l1 = _slice_linear(self.l1, keep1, None)
            self.l2 = _slice_linear(self.l2, keep2, keep1)
            self.l3 = _slice_linear(self.l3, None, keep2)
            if keep1 is not None:
                changed["l1.weight"] = [(0, keep1)]
                changed["l2.weight"] = [(1, keep1)]
                if self.l1.bias is not None:
                    changed["l1.bias"] = [(0, keep1)]
            if keep2 is not None:
                changed.setdefault("l2.weight", []).append((0, keep2))
                changed["l3.weight"] = [(1, keep2)]
                if self.l2.bias is not None:
                    changed["l2.bias"] = [(0, keep2)]
        self._reset_counters()
        return changed


def _kept_units(ratio: torch.Tensor, threshold: float, min_units: int) -> torch.Tensor | None:
    """Sorted ids of units to keep, or None when none is removed."""
    alive = ratio < threshold  # [units]
    if bool(alive.all()):
        return None
    if int(alive.sum()) < min_units:
        # Too many would go: keep the `min_units` least dead ones, so the tower never collapses.
        alive = torch.zeros_like(alive)
        alive[torch.argsort(ratio, stable=True)[: min(min_units, ratio.numel())]] = True
    return torch.nonzero(alive).flatten()


class BlockPredictor(nn.Module):
    """Predicted block score map of one layer: x [n, d] normed hidden states -> [nb, nb] lower triangular."""

    def __init__(self, config: PredictorConfig, widths: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.config = config
        widths = widths or {}
        c = config
        qh, qm = widths.get("q", (c.hidden, c.mid_dim))
        kh, km = widths.get("k", (c.hidden, c.mid_dim))
        self.q = Tower(c.in_dim, qh, qm, c.tower_out, c.bias)
        self.k = Tower(c.in_dim, kh, km, c.tower_out, c.bias)

    @property
    def block_size(self) -> int:
        return self.config.block_size

    @property
    def widths(self) -> dict[str, tuple[int, int]]:
        return {"q": self.q.widths, "k": self.k.widths}

    def _check_width(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.config.d_model:
            raise ValueError(
                f"predictor expects hidden states [n, {self.config.d_model}], got {tuple(x.shape)}: these "
                "predictors were calibrated for another model; run `lemo calibrate` for this one."
            )

    def block_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, d] -> e [S, nb, b*s]: per (head-sized slice, block), the block's slice values in a row."""
        c = self.config
        self._check_width(x)
        n, d = x.shape
        b, s, S = c.block_size, c.slice_dim, c.n_slices
        nb = max(1, math.ceil(n / b))
        # Zero padding: missing tokens of a partial last block, missing columns of a partial last slice.
        x = torch.nn.functional.pad(x, (0, S * s - d, 0, nb * b - n))  # [nb*b, S*s]
        return x.view(nb, b, S, s).permute(2, 0, 1, 3).reshape(S, nb, b * s)  # [S, nb, b*s]

    def token_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, d] -> [nb, b, d] whole blocks of tokens, the partial last block zero-padded ("max" pooling)."""
        self._check_width(x)
        n, d = x.shape
        b = self.config.block_size
        nb = max(1, math.ceil(n / b))
        x = torch.nn.functional.pad(x, (0, 0, 0, nb * b - n))  # [nb*b, d]
        return x.view(nb, b, d)  # [nb, b, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [n, d] -> predicted block map [nb, nb] (lower triangular, float32)."""
        dtype = self.q.l1.weight.dtype
        c = self.config
        if c.pool == "concat":
            e = self.block_embeddings(x.to(dtype))  # [S, nb, b*s]
            q_hat = self.q(e)  # [S, nb, o]
            k_hat = self.k(e)  # [S, nb, o]
            score_map = torch.einsum("smo,sno->mn", q_hat, k_hat)  # [nb, nb] summed over slices
        else:
            e = self.token_blocks(x.to(dtype))  # [nb, b, d]
            nb, b = e.shape[0], e.shape[1]
            valid = None
            if nb * b != x.shape[0]:
                real = torch.arange(nb * b, device=e.device) < x.shape[0]  # [nb*b]
                valid = real.to(dtype).view(nb, b, 1)  # [nb, b, 1]
            q_hat = self.q(e, pool_dim=1, valid=valid).view(nb, c.n_slices, c.out)  # [nb, S, o]
            k_hat = self.k(e, pool_dim=1, valid=valid).view(nb, c.n_slices, c.out)  # [nb, S, o]
            score_map = torch.einsum("mso,nso->mn", q_hat, k_hat)  # [nb, nb] summed over pseudo-heads
        return score_map.float().tril()  # causal: a query block never attends to a later key block

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted informativeness I_n [nb]: the oracle's reduction applied to the predicted map."""
        return informativeness(self(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
