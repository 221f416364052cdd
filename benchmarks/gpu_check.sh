#!/usr/bin/env bash
# The CUDA path of issue 19 on a lent GPU machine: prints the GPUs, runs the text-encoder
# harness quickly in bf16 on one GPU (a bigger encoder with MODEL=...), then, when two GPUs
# are present, the same meta-training on both through DDP; prints the numbers, exits non-zero
# on any failure.
#
#     bash benchmarks/gpu_check.sh                      # on the GPU machine, repository root
#     MODEL=BAAI/bge-base-en-v1.5 bash benchmarks/gpu_check.sh
#     bash benchmarks/gpu_check.sh --cpu-dry-run        # the same commands, tiny, on the CPU
#
# DATA (default ../shared/data/amazon-scientific-unisrec), OUT (default
# benchmarks/results/gpu_check), PYTHON (default .venv/bin/python, else python) and MODEL
# (default: the experiments' encoder) and ROWS (default: frozen_global and the encoder rows)
# are read from the environment.
set -euo pipefail

DRY_RUN=0
if [[ "${1:-}" == "--cpu-dry-run" ]]; then DRY_RUN=1; fi
PYTHON=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python )}
DATA=${DATA:-../shared/data/amazon-scientific-unisrec}
OUT=${OUT:-benchmarks/results/gpu_check}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
# A few meta-steps and tasks: a check that the path runs and what it costs, not a result.
QUICK=(--set "data.root=$DATA" --set trainer.limit_train_batches=5
       --set data.amazon.max_eval_tasks=32)
ROWS=${ROWS:-frozen_global,full_global,lora_global,lora_finetune}

if [[ $DRY_RUN == 1 ]]; then
    echo "== cpu dry run: the GPU commands on the CPU, 2 meta-steps, 4 tasks"
    QUICK=(--set "data.root=$DATA" --set trainer.limit_train_batches=2
           --set data.amazon.max_eval_tasks=4)
    DEVICE=(--device cpu)
    GPUS=0
else
    command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: not a GPU machine" >&2; exit 1; }
    nvidia-smi
    GPUS=$(nvidia-smi --list-gpus | wc -l)
    DEVICE=(--device cuda --precision bf16-mixed)
fi
if [[ -n "${MODEL:-}" ]]; then DEVICE+=(--model "$MODEL"); fi
"$PYTHON" - <<'EOF'
import torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
      f"devices: {torch.cuda.device_count()}, bf16: "
      f"{torch.cuda.is_available() and torch.cuda.is_bf16_supported()}")
EOF

echo "== text-encoder harness (${DEVICE[*]}), rows $ROWS"
rm -rf "$OUT"
"$PYTHON" benchmarks/text_encoders.py --rows "$ROWS" --seeds 0 "${DEVICE[@]}" "${QUICK[@]}" \
    --out "$OUT"
"$PYTHON" - "$OUT/text_encoders.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
failed = [f"{run['row']} seed {run['seed']}: {run['status']}" for run in runs if run["status"] != "ok"]
for run in runs:
    if run["status"] == "ok":
        print(f"{run['row']:>16}: {run['peak_mb']:>9.0f} MB ({run['peak_kind']}), "
              f"fit {run['fit_seconds']:.0f} s, {run['seconds_per_task']:.4f} s/task")
if failed:
    sys.exit("gpu_check: failed runs:\n" + "\n".join(failed))
EOF

if [[ $GPUS -ge 2 ]]; then
    echo "== DDP on 2 GPUs: meta-training throughput, 1 vs 2 processes"
    "$PYTHON" benchmarks/distributed.py --synthetic --devices 2 --accelerator gpu --steps 20 --warmup 5 \
        --out "$OUT/distributed.json"
    echo "== DDP on 2 GPUs: one encoder row trained end to end (trainer.devices=2)"
    "$PYTHON" benchmarks/text_encoders.py --rows lora_global --seeds 0 "${DEVICE[@]}" \
        "${QUICK[@]}" --set trainer.devices=2 --set trainer.strategy=ddp --out "$OUT/ddp"
else
    echo "== DDP skipped: $GPUS GPU(s), 2 needed"
fi
echo "gpu_check: ok"
