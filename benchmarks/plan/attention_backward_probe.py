"""GPU memory of one HF Llama decoder layer's sublayers in backward, per token (the -19.5% plan miss).

`lemo plan` misses the GPU peak of MLP-tiled offload rows at 128K by -19.5% (docs/plan.md): with the MLP tiled,
the peak moves to a dense layer's attention backward. This measures that backward alone, on one Llama-3-8B-shaped
decoder layer (random bf16 weights, LoRA r=8 on q/k/v/o as in the benchmark but with bf16 adapters, so
no fp32 copies of LoRA inputs; SDPA as HF runs it), at two lengths,
so the per-token slope is free of constants:

    python benchmarks/plan/attention_backward_probe.py --lengths 65536 131072

Prints, per sublayer, what forward leaves saved and the peak above the input during backward, in KiB per token.
"""

from __future__ import annotations

import argparse
import sys

import torch


def sublayers(T: int, device: torch.device) -> dict[str, float]:
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    cfg = LlamaConfig(
        hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8,
        num_hidden_layers=1, max_position_embeddings=T, rope_theta=500000.0,
    )  # fmt: skip
    cfg._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(cfg, 0).to(device, torch.bfloat16)
    layer.requires_grad_(False)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    layer = inject_adapter_in_model(lora, layer).to(device, torch.bfloat16)
    rope = LlamaRotaryEmbedding(cfg).to(device)
    x = torch.randn(
        1, T, cfg.hidden_size, device=device, dtype=torch.bfloat16, requires_grad=True
    )  # [1, T, d]
    pos = torch.arange(T, device=device)[None]  # [1, T]
    cos, sin = rope(x, pos)  # [1, T, head_dim] each

    def attention(h: torch.Tensor) -> torch.Tensor:
        out, _ = layer.self_attn(
            hidden_states=layer.input_layernorm(h), position_embeddings=(cos, sin), attention_mask=None
        )
        return h + out  # [1, T, d]

    def mlp(h: torch.Tensor) -> torch.Tensor:
        return h + layer.mlp(layer.post_attention_layernorm(h))  # [1, T, d]

    out = {}
    for name, fn in (("attention", attention), ("mlp", mlp)):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        y = fn(x)
        saved = torch.cuda.memory_allocated() - base - y.numel() * y.element_size()
        fwd_peak = torch.cuda.max_memory_allocated() - base
        g = torch.ones_like(y)
        torch.cuda.reset_peak_memory_stats()
        base_bwd = torch.cuda.memory_allocated()
        y.backward(g)
        torch.cuda.synchronize()
        out[f"{name} saved"] = saved / T / 1024
        out[f"{name} forward peak"] = fwd_peak / T / 1024
        out[f"{name} backward peak above saved+output+grad"] = (
            (torch.cuda.max_memory_allocated() - base_bwd) / T / 1024
        )
        del y, g
        x.grad = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[65536, 131072])
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("this probe needs a CUDA GPU", file=sys.stderr)
        return 2
    import transformers

    print(
        f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {transformers.__version__}"
    )
    rows = {T: sublayers(T, torch.device("cuda")) for T in args.lengths}
    keys = list(next(iter(rows.values())))
    print("measure," + ",".join(f"KiB/token at T={T}" for T in rows))
    for k in keys:
        print(k + "," + ",".join(f"{rows[T][k]:.2f}" for T in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
