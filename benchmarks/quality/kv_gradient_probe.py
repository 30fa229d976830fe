"""Probe: which gradient signal points at the evidence when every position carries loss (plain text)?

`scorer="gradient"` ranks a layer's blocks by the gradient at its output, dL/d out. On plain text every row's
gradient also carries that row's own next-token loss, so filler scores high too (suite_bias_gradient_cpu.csv:
evidence 0.70, filler 0.58 kept). The gradient at the keys and values of a row is different: it is what the
*other* rows' queries need from this row's content, which is what evidence is. In backward elimination the layer
above has computed it (its kept queries against every key) before this layer chooses, so it would cost nothing.

This probe measures, without lemo and without training (the dense model, weights frozen, one backward per row),
per layer l and form: the evidence / filler blocks kept by `select_by_ratio` (keep 0.6, label blocks first, as
the library selects) when blocks are scored by
- "output": dL/d out of layer l (the gradient scorer's signal, here with dense upstream gradients);
- "kv above": |dL/dk| + |dL/dv| per row at layer l+1 (the signal the layer above would hand down);
- "kv own": the same at layer l (not available to a backward-time choice; an upper reference).
A block scores its largest row, as the gradient scorer does.

    python benchmarks/quality/kv_gradient_probe.py --rows 2 --seq-len 4096 \\
        --out benchmarks/results/kv_gradient_probe_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from common import provenance  # beside this script
from suite_bias import block_masks  # the same rows and masks as the selection-bias table

from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.suite_rows import training_rows
from lemo.integrations.transformers.loading import load_model
from lemo.ops import blocks_with_any, select_by_ratio

SIGNALS = ("output", "kv above", "kv own")
FIELDS = ["signal", "form", "layer", "kept_evidence", "kept_filler", "rows", "seq_len", "keep_ratio", "gpu",
          "torch", "transformers", "commit", "timestamp", "command"]  # fmt: skip


def row_gradients(model, x: torch.Tensor, labels: torch.Tensor) -> tuple[list, list]:
    """Per decoder layer: ([T] |dL/d out| per row, [T] |dL/dk| + |dL/dv| per row) for one row x [1, T]."""
    layers = model.model.layers
    out_g: list = [None] * len(layers)
    kv_g: list = [torch.zeros(x.shape[1]) for _ in layers]
    handles = []

    def on_output(i):
        def hook(_m, _a, out):
            h = out[0] if isinstance(out, tuple) else out
            h.register_hook(lambda g: out_g.__setitem__(i, g[0].float().norm(dim=-1).cpu()))

        return hook

    def on_proj(i):
        def grad(g: torch.Tensor) -> None:
            kv_g[i].add_(g[0].float().norm(dim=-1).cpu())  # [T]; returns nothing: the gradient flows on as is

        def hook(_m, _a, out):
            out.register_hook(grad)

        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(on_output(i)))
        handles.append(layer.self_attn.k_proj.register_forward_hook(on_proj(i)))
        handles.append(layer.self_attn.v_proj.register_forward_hook(on_proj(i)))
    try:
        model(input_ids=x, labels=labels).loss.backward()
    finally:
        for h in handles:
            h.remove()
    return out_g, kv_g


def block_max(row_scores: torch.Tensor, block: int) -> torch.Tensor:
    """[nb] the largest row score of each block."""
    n = row_scores.numel()
    pad = torch.zeros(-(-n // block) * block)
    pad[:n] = row_scores
    return pad.view(-1, block).amax(dim=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--layers", type=int, nargs=2, default=[14, 28], help="first and last layer reported")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/kv_gradient_probe_cpu.csv"))
    args = ap.parse_args(argv)
    env = provenance(argv)
    model, tok = load_model(
        smollm2_dir(), dtype=torch.float32, device="cpu", rope_scaling="yarn", rope_factor=2.0
    )
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    model.enable_input_require_grads()
    records = training_rows(austen_split()[0], tok, args.seq_len, args.rows, seed=99, cfg=SuiteConfig.v1())
    tally: dict[tuple[str, str, int], list[int]] = {}
    for form in ("sup", "text"):
        for rec in records:
            ids, n_prompt, ev, filler = block_masks(rec, form, tok, 64)
            x = torch.tensor(ids)[None]  # [1, T]
            labels = x.clone()
            if form == "sup":
                labels[:, :n_prompt] = -100
            out_g, kv_g = row_gradients(model, x, labels)
            labelled = blocks_with_any(labels[0] != -100, 64)  # [nb] label priority's tier
            for layer in range(args.layers[0], args.layers[1] + 1):
                rows = {"output": out_g[layer], "kv above": kv_g[layer + 1], "kv own": kv_g[layer]}
                for signal, r in rows.items():
                    kept = torch.zeros(ev.numel(), dtype=torch.bool)
                    kept[select_by_ratio(block_max(r, 64), args.keep_ratio, 1, 1, priority=[labelled])] = True
                    t = tally.setdefault((signal, form, layer), [0, 0, 0, 0])
                    t[0] += int((kept & ev).sum())
                    t[1] += int(ev.sum())
                    t[2] += int((kept & filler).sum())
                    t[3] += int(filler.sum())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for (signal, form, layer), (ke, ne, kf, nf) in sorted(tally.items()):
            row = dict(signal=signal, form=form, layer=layer, kept_evidence=ke / max(ne, 1),
                       kept_filler=kf / max(nf, 1))  # fmt: skip
            w.writerow(
                {**row, "rows": args.rows, "seq_len": args.seq_len, "keep_ratio": args.keep_ratio, **env}
            )
    for signal in SIGNALS:
        for form in ("sup", "text"):
            cells = [v for (s, f, _), v in tally.items() if s == signal and f == form]
            e = sum(c[0] / max(c[1], 1) for c in cells) / len(cells)
            f_ = sum(c[2] / max(c[3], 1) for c in cells) / len(cells)
            print(f"{signal:9s} {form:4s} evidence {e:.2f} filler {f_:.2f} (mean over layers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
