#!/usr/bin/env bash
# The GPU sweeps of issues 3-5, one section per device call (each must finish within 10 minutes).
#   bash benchmarks/device/gpu_sweep.sh llama     # GPU parity tests + Llama-3-8B steps at 8K/32K + ablation at 32K
#   bash benchmarks/device/gpu_sweep.sh sweep     # Llama-3-8B, T = 4K..64K until OOM, with the model-FLOPs rate
#   bash benchmarks/device/gpu_sweep.sh sweep-7b  # the same on the Llama-2-7B shape
#   bash benchmarks/device/gpu_sweep.sh longest   # longest trainable T under an 80 GB cap (Llama-3-8B)
#   bash benchmarks/device/gpu_sweep.sh smollm2-calib     # predictors calibrated on GPU, held-out recall
#   bash benchmarks/device/gpu_sweep.sh smollm2-quality   # quality with predictors and longlora, SmolLM2 speed rows
# Needs LEMO_COMMIT (the commit being measured) and OUT (where CSVs go); smollm2 needs the model staged
# (LEMO_SMOLLM2_GGUF, LEMO_AUSTEN_DIR). Results are appended to $OUT/*.csv, then committed to benchmarks/results.
set -euo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
case "${1:?section}" in
llama)
    python -m pytest -q -m gpu tests/ops/test_ops_gpu.py 2>&1 | tail -3
    python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 --lengths 8192 \
        --configs lora longlora lemo-shared lemo-shared+sgc lemo-shared+gc exact --out "$OUT/e2e_llama3_8b_ablation.csv"
    python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 --lengths 32768 \
        --configs exact lemo-shared+gc lemo-shared+sgc abl-mlp-dense+gc abl-loss-all+gc abl-copy-residual+gc \
        abl-reference+gc abl-hf-loss+gc --budget-s 330 --out "$OUT/e2e_llama3_8b_ablation.csv"
    ;;
sweep)
    python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 \
        --lengths 4096 8192 16384 32768 65536 --configs lora lora+gc exact longlora lemo-shared lemo-shared+sgc \
        lemo-shared+gc --budget-s 500 --out "$OUT/e2e_llama3_8b_sweep.csv"
    ;;
sweep-7b)
    python benchmarks/e2e/bench.py --shape llama2-7b --backend auto --keep-ratio 0.6 \
        --lengths 4096 8192 16384 32768 --configs lora exact longlora lemo-shared lemo-shared+gc \
        --budget-s 300 --out "$OUT/e2e_llama2_7b_sweep.csv"
    ;;
longest)
    python benchmarks/e2e/bench.py --mode longest --shape llama3-8b --backend auto --keep-ratio 0.6 \
        --configs exact lemo-shared+gc --search-start 65536 --steps 1 --warmup 0 --budget-s 330 \
        --out "$OUT/e2e_llama3_8b_longest.csv"
    python benchmarks/e2e/bench.py --mode longest --shape llama3-8b --backend auto --keep-ratio 0.6 \
        --configs lora lemo-shared lemo-shared+sgc longlora --search-start 8192 --steps 1 --warmup 0 \
        --budget-s 200 --out "$OUT/e2e_llama3_8b_longest.csv"
    ;;
longest-more)
    python benchmarks/e2e/bench.py --mode longest --shape llama3-8b --backend auto --keep-ratio 0.6 \
        --configs lora+gc --search-start 16384 --steps 1 --warmup 0 --out "$OUT/e2e_llama3_8b_longest.csv"
    python benchmarks/e2e/bench.py --mode longest --shape llama2-7b --backend auto --keep-ratio 0.6 \
        --configs exact lemo-shared+gc lora lemo-shared --search-start 4096 --steps 1 --warmup 0 --budget-s 400 \
        --out "$OUT/e2e_llama2_7b_longest.csv"
    ;;
smollm2-calib)
    python benchmarks/quality/predictor_recall.py --pool concat max --steps 400 1000 --seq-len 8192 --train-chunks 100 \
        --eval-chunks 8 4 --threads 8 --cache-dir /root/calib --save /root/preds --out "$OUT/predictor_recall_gpu.csv"
    cp -r /root/preds "$OUT/preds"
    ;;
smollm2-quality)
    python benchmarks/quality/rope_extension.py --seq-len 16384 --steps 50 --configs lora longlora \
        k=0.6,shared=1,loss=kept,mlp=tokens k=0.6,shared=1,loss=kept,mlp=tokens,pred=/root/preds/max \
        k=0.6,shared=1,loss=kept,mlp=tokens,pred=/root/preds/concat --eval-lengths 4096 8192 16384 \
        --eval-windows 4 --work /root/qwork --out "$OUT/quality_smollm2_pred.csv"
    python benchmarks/e2e/bench.py --shape smollm2 --backend auto --keep-ratio 0.6 \
        --lengths 4096 8192 16384 32768 65536 --configs lora longlora exact lemo-shared lemo-shared+gc \
        --budget-s 90 --out "$OUT/e2e_smollm2.csv"
    ;;
*) echo "unknown section $1" >&2; exit 2 ;;
esac
