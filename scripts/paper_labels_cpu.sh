#!/usr/bin/env bash
# Issue 28, step 2.1 on the CPU: SmolLM2-135M-Instruct, 500 rows (the demo's seeded subset), 4 epochs
# (248 steps at batch 8), plain vs LLM-JEPA (k 1, lambda 1) under the released code's settings that a CPU
# can afford: labels on every token but eos (--label_mode paper), linear decay, no warm-up, weight
# decay 0, Adam betas of the Trainer's defaults. Resumable: rerun the same command after a stop.
# usage: scripts/paper_labels_cpu.sh OUT SEED RATE [ARM...]   (ARM: baseline | jepa)
set -euo pipefail
OUT=$1; SEED=$2; RATE=$3; shift 3
ARMS=${*:-baseline jepa}
DATA=${DATA:-../shared/datasets}
THREADS=${THREADS:-1}
mkdir -p "$OUT/data"
# the demo's rule for the training subset (first 500 of a permutation drawn with the seed, in file order)
python -c "import sys; from pathlib import Path; from llm_jepa.demo.run import _train_subset; \
print(_train_subset(Path('$DATA/synth_train.jsonl'), 500, $SEED, Path('$OUT')))"
for arm in $ARMS; do
  run="$OUT/runs/$arm"
  case $arm in
    baseline) objective="--regular true --monitor_views_every 10";;
    jepa) objective="--predictors 1 --jepa_lambda 1.0";;
  esac
  if [ ! -f "$run/train_results.json" ]; then
    resume=""; [ -n "$(ls -d "$run"/checkpoint-* 2>/dev/null)" ] && resume="--resume true"
    llm-jepa train --model smollm2-135m-instruct --data "$OUT/data/train.jsonl" --output_dir "$run" \
      --max_steps 248 --per_device_train_batch_size 8 --learning_rate "$RATE" \
      --lr_scheduler_type linear --warmup_steps 0 --weight_decay 0 --adam_beta2 0.999 --max_grad_norm 1.0 \
      --label_mode paper --view_system none --max_length 256 --dataloader_drop_last true \
      --logging_steps 10 --save_steps 62 --save_total_limit 1 --seed "$SEED" --disable_tqdm true \
      --threads "$THREADS" $objective $resume
  fi
  if [ ! -f "$run/eval/summary.json" ]; then
    llm-jepa eval --model "$run" --data "$DATA/synth_test.jsonl" --task regex --limit 300 \
      --batch-size 64 --max-new-tokens 64 --output "$run/eval" --threads "$THREADS" --no-similarity
  fi
done
