"""Learned block-score predictors (design.md section 4; lemo-paper.md sections 3.5 and 3.7).

One `BlockPredictor` per sparse layer reads the layer's normed hidden states x [n, d] of one segment and
predicts the oracle's block score map S [nb, nb]; the oracle's own reduction (`lemo.ops.informativeness`)
then gives I_n:

    x [n, d] -> pad to nb*b rows and S*s columns (s = slice size, default the head size; S = ceil(d / s))
             -> e [S, nb, b*s]       each (head-sized slice, block) becomes one vector of b*s values
    q_hat = MLP_q(e) [S, nb, o]      b*s -> hidden -> mid -> o, ReLU between; weights shared across slices
    k_hat = MLP_k(e) [S, nb, o]
    map   = tril(sum_s q_hat_s k_hat_s^T) [nb, nb]

The artifact's shape is the default (hidden 128, mid b*s, o = s). The predictor reads a slice of the *hidden
state*, not of q/k, so it works for any head size and for GQA alike (it never sees the projections); when d is
not a multiple of s the last slice is zero-padded. Elastic pruning (lemo-paper.md section 3.6) shrinks
`hidden` and `mid` per tower; the widths are saved so that a pruned set reloads at its own shape.

`pool="max"` is our variant (not in the paper): each *token's* full hidden vector goes through
d -> hidden -> mid (ReLU), the block takes the elementwise max over its tokens, and a last linear layer maps
it to S pseudo-heads of o values, so q_hat, k_hat are [nb, S, o] and map = sum over pseudo-heads as above.
The oracle is a max over token pairs, which an MLP over the concatenated block can only mimic by learning
the same detector at every one of the b positions; the token tower learns it once (permutation-invariant
within a block, like the oracle's off-diagonal entries), which needs far less calibration data.

`PredictorSet` holds one predictor per sparse layer, is what `lemo.apply(model, cfg, predictors=...)` takes
(through `as_scorer()`), and saves to / loads from a directory: `predictors.safetensors` + `predictors.json`
(the predictor config, per-layer widths and the `ModelIdentity` of the calibrated model).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lemo._version import __version__
from lemo.ops import informativeness
from lemo.predictor.identity import ModelIdentity, validate_identity
from lemo.sparsity.parts import LayerParts

FORMAT = "lemo-predictors"
FORMAT_VERSION = 1
WEIGHTS_FILE = "predictors.safetensors"
CONFIG_FILE = "predictors.json"
REPORT_FILE = "calibration.json"


@dataclass
class PredictorConfig:
    """The shape of every predictor of a set (pruning may later narrow `hidden`/`mid` per layer and tower)."""

    d_model: int
    """Hidden size of the model (the width of the normed hidden states)."""
    slice_dim: int
    """Width of one slice of the hidden state; the model's head size by default (the artifact's choice)."""
    block_size: int = 64
    """Tokens per block; must equal SparsityConfig.block_size at use."""
    hidden: int = 128
    """First hidden width of each tower (the artifact's 128)."""
    mid: int | None = None
    """Second hidden width; None: block_size * slice_dim, the artifact's (8192 for b=64, head size 128)."""
    out_dim: int | None = None
    """Width of q_hat and k_hat; None means slice_dim."""
    bias: bool = False
    """Linear biases (the artifact trains without them)."""
    pool: str = "concat"
    """"concat": the artifact's MLP over each (slice, block) vector; "max": per-token tower, max over the block."""

    def __post_init__(self) -> None:
        if self.pool not in ("concat", "max"):
            raise ValueError(f"PredictorConfig.pool={self.pool!r} is unknown; use 'concat' or 'max'.")
        for name in ("d_model", "slice_dim", "block_size", "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"PredictorConfig.{name}={v!r} must be a positive integer.")
        for name in ("mid", "out_dim"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(
                    f"PredictorConfig.{name}={v!r} must be a positive integer or None (automatic)."
                )

    @property
    def n_slices(self) -> int:
        return math.ceil(self.d_model / self.slice_dim)

    @property
    def in_dim(self) -> int:
        """Tower input: one (slice, block) vector of b*s values ("concat") or one token's d values ("max")."""
        return self.block_size * self.slice_dim if self.pool == "concat" else self.d_model

    @property
    def mid_dim(self) -> int:
        if self.mid is not None:
            return self.mid
        return self.in_dim if self.pool == "concat" else 2 * self.hidden

    @property
    def out(self) -> int:
        """Width of q_hat / k_hat per slice (pseudo-head)."""
        return self.out_dim if self.out_dim is not None else self.slice_dim

    @property
    def tower_out(self) -> int:
        """Tower output width: o per slice ("concat"), all S pseudo-heads at once ("max")."""
        return self.out if self.pool == "concat" else self.n_slices * self.out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PredictorConfig keys {unknown}; known keys: {sorted(known)}.")
        return cls(**data)


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


class PredictorScorer:
    """A `BlockScorer` backed by a `PredictorSet`; also accumulates the predictors' time per call.

    Time is measured with CUDA events on GPU (no host synchronisation in the hot path; the events are read
    only when `timings()` is called) and with a wall clock on CPU.
    """

    def __init__(self, predictors: PredictorSet) -> None:
        self.predictors = predictors
        self.reset()

    def reset(self) -> None:
        self._calls = 0
        self._cpu_s = 0.0
        self._events: list[tuple[Any, Any]] = []

    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        pred = self.predictors.predictor(parts.index)
        if block_size != pred.block_size:
            raise ValueError(
                f"the predictors were calibrated with block_size={pred.block_size}, but SparsityConfig has "
                f"block_size={block_size}; use SparsityConfig(block_size={pred.block_size}) (--block-size "
                f"{pred.block_size}) or recalibrate with --block-size {block_size}."
            )
        weight = pred.q.l1.weight
        if weight.device != x.device:
            # Predictors follow the model's device on first use (saved sets load on CPU).
            self.predictors.to(x.device)
        cuda = x.device.type == "cuda"
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        with torch.no_grad():
            out = pred.scores(x)  # [nb]
        if cuda:
            end.record()
            self._events.append((start, end))
        else:
            self._cpu_s += time.perf_counter() - t0
        self._calls += 1
        return out

    def timings(self) -> dict[str, float]:
        """{"calls", "seconds", "ms_per_call", "param_bytes"} since the last `reset()`."""
        seconds = self._cpu_s + sum(s.elapsed_time(e) for s, e in self._events) / 1000.0
        return {
            "calls": float(self._calls),
            "seconds": seconds,
            "ms_per_call": 1000.0 * seconds / self._calls if self._calls else 0.0,
            "param_bytes": float(self.predictors.nbytes()),
        }


class PredictorSet(nn.Module):
    """One `BlockPredictor` per sparse layer, plus the identity of the model they were calibrated on."""

    def __init__(
        self,
        config: PredictorConfig,
        layers: list[int],
        identity: ModelIdentity | None = None,
        widths: dict[int, dict[str, tuple[int, int]]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError(
                "a PredictorSet needs at least one layer; check sparse_layers (it resolved to none)."
            )
        self.config = config
        self.identity = identity
        # Calibration settings worth keeping with the weights (seq_len, steps, keep ratios ...).
        self.meta: dict[str, Any] = dict(meta or {})
        # The CalibrationReport of the run that produced this set, when it came from `calibrate`.
        self.report: Any = None
        widths = widths or {}
        self.predictors = nn.ModuleDict(
            {str(i): BlockPredictor(config, widths.get(i)) for i in sorted(layers)}
        )

    @property
    def layers(self) -> list[int]:
        return [int(k) for k in self.predictors]

    def predictor(self, layer: int) -> BlockPredictor:
        key = str(layer)
        if key not in self.predictors:
            raise KeyError(
                f"no predictor for layer {layer}; these predictors cover layers {self.layers}. Use "
                f"SparsityConfig(sparse_layers={self.layers}) or recalibrate with the sparse layers you want."
            )
        return self.predictors[key]  # type: ignore[return-value]

    def __getitem__(self, layer: int) -> BlockPredictor:
        return self.predictor(layer)

    def as_scorer(self) -> PredictorScorer:
        """The `BlockScorer` that `lemo.apply(model, cfg, predictors=self)` uses (one per set, so that
        `timings()` reports the calls made through `lemo.apply`)."""
        scorer = self.__dict__.get("_scorer")
        if scorer is None:
            scorer = PredictorScorer(self)
            self.__dict__["_scorer"] = scorer  # not a submodule / parameter: bypass nn.Module.__setattr__
        return scorer

    def timings(self) -> dict[str, float]:
        """Time and memory of the predictor calls made through `as_scorer()` since the last `reset_timings()`:
        {"calls", "seconds", "ms_per_call", "param_bytes"} (what `lemo finetune` logs)."""
        return self.as_scorer().timings()

    def reset_timings(self) -> None:
        self.as_scorer().reset()

    def activation_bytes(self, seq_len: int) -> int:
        """Transient memory of one predictor call at `seq_len` tokens (no grad): the largest live tensors."""
        c = self.config
        nb = max(1, math.ceil(seq_len / c.block_size))
        el = next(self.parameters()).element_size()
        widest = max(max(w["q"] + w["k"]) for w in self.widths().values())
        rows = c.n_slices * nb if c.pool == "concat" else nb * c.block_size  # vectors one tower processes
        tower = rows * (c.in_dim + 2 * widest) * el  # its input, one pre-activation and its ReLU
        return int(tower + 2 * nb * c.n_slices * c.out * el + 2 * nb * nb * 4)  # + q_hat, k_hat, fp32 map

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def widths(self) -> dict[int, dict[str, tuple[int, int]]]:
        return {i: self.predictor(i).widths for i in self.layers}

    def track_deaths(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, Tower):
                m.track_deaths = on

    def prune(self, threshold: float, min_units: int = 8) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Elastic pruning of every tower (see `Tower.prune`); returns slicings keyed by parameter name."""
        changed: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for name, m in self.named_modules():
            if isinstance(m, Tower):
                for pname, sl in m.prune(threshold, min_units).items():
                    changed[f"{name}.{pname}"] = sl
        return changed

    # ---------------------------------------------------------------- save / load

    def save(self, directory: str | Path) -> Path:
        """Write `predictors.safetensors` + `predictors.json` (+ `calibration.json` with a report)."""
        from safetensors.torch import save_file  # imported only when saving

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {name: p.detach().contiguous().cpu() for name, p in self.state_dict().items()}
        save_file(
            tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)}
        )
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "lemo_version": __version__,
            "model": self.identity.to_dict() if self.identity is not None else None,
            "predictor": self.config.to_dict(),
            "layers": {str(i): {k: list(v) for k, v in w.items()} for i, w in self.widths().items()},
            "dtype": str(next(self.parameters()).dtype).removeprefix("torch."),
            "num_parameters": self.num_parameters(),
            "meta": self.meta,
        }
        (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if self.report is not None and hasattr(self.report, "to_dict"):
            (out / REPORT_FILE).write_text(
                json.dumps(self.report.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        return out


def load_predictors(
    directory: str | Path,
    model: ModelIdentity | None = None,
    *,
    strict: bool = True,
    device: str | torch.device | None = None,
) -> PredictorSet:
    """Load a predictor set saved by `PredictorSet.save` (or `lemo calibrate`).

    Args:
        directory: the folder holding predictors.json and predictors.safetensors.
        model: the identity of the model they will serve; when given, predictors calibrated for another model
            are refused with a ValueError naming the differences. (`lemo.load_predictors(dir, model)` accepts
            the HF model itself and computes its identity.)
        strict: when False, a weight-fingerprint difference alone is accepted (shape differences never are).
        device: where to put the weights (default CPU; the scorer moves them to the model's device when used).
    """
    from safetensors.torch import load_file  # imported only when loading

    d = Path(directory)
    cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"{d} does not hold a predictor set ({CONFIG_FILE} and {WEIGHTS_FILE} expected); "
            "create one with `lemo calibrate --output DIR` or lemo.calibrate(model, texts).save(DIR)."
        )
    doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a lemo predictor config (format {doc.get('format')!r}).")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format version {doc['version']}, newer than this lemo reads ({FORMAT_VERSION}); "
            "upgrade lemo (pip install -U lemo)."
        )
    identity = ModelIdentity.from_dict(doc["model"]) if doc.get("model") else None
    if identity is not None:
        validate_identity(identity)
    if model is not None:
        if identity is None:
            raise ValueError(
                f"{d} records no model identity, so it cannot be checked against this model; recalibrate."
            )
        identity.check(model, source=f"the predictors in {d}", strict=strict)
    config = PredictorConfig.from_dict(doc["predictor"])
    widths = {int(i): {k: tuple(v) for k, v in w.items()} for i, w in doc["layers"].items()}
    pset = PredictorSet(config, sorted(widths), identity, widths, doc.get("meta"))
    state = load_file(str(w_path))
    dtype = next(iter(state.values())).dtype if state else torch.float32
    pset.to(dtype)
    try:
        pset.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{w_path} does not match {cfg_path} ({str(err).splitlines()[-1].strip()}); the two files "
            "come from different runs: save them together again (PredictorSet.save) or recalibrate."
        ) from None
    if device is not None:
        pset.to(device)
    return pset
