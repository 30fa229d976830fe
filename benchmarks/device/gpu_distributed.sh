#!/usr/bin/env bash
# Issue 11 on a 2-GPU machine (nvidia-h200-x2): one GPU against two under FSDP2, `exact` and lemo's default
# (lemo-random+gc), at 16K and 32K, Llama-3-8B shape with random weights (speed and memory do not depend on
# them). One call, about 5 minutes. Needs LEMO_COMMIT and OUT.
#   bash benchmarks/device/gpu_distributed.sh
# Rows go to $OUT/e2e_llama3_8b_fsdp.csv: world_size 1 and 2, tokens/s of the job, the largest rank's peak and
# weights_gib_per_gpu (FSDP2's shard of the parameters).
set -euo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
# NVLink multicast stays off (the device machines' rule: it can take shared GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
args=(bench --shape llama3-8b --backend auto --keep-ratio 0.6 --lengths 16384 32768 --configs exact lemo-random+gc
      --steps 3 --warmup 1 --out "$OUT/e2e_llama3_8b_fsdp.csv")
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpus.txt"
CUDA_VISIBLE_DEVICES=0 python -m lemo "${args[@]}" 2>&1 | tee -a "$OUT/bench.log"
torchrun --standalone --nproc-per-node 2 -m lemo "${args[@]}" 2>&1 | tee -a "$OUT/bench.log"
