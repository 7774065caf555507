#!/usr/bin/env bash
# Prints the predicted-against-measured table of docs/planning.md.
# Usage: scripts/prediction_table.sh [path/to/gradaccum]
set -euo pipefail
GRADACCUM=${1:-.build/release/gradaccum}
SIZES=1,2,4,8,16,32,64,128,256,512,1024
echo "| model | optimizer | loss | micro-batch | predicted | measured | error |"
echo "|---|---|---|---:|---:|---:|---:|"
while IFS='|' read -r model shape optimizer loss; do
  "$GRADACCUM" plan --model "$model" --input-shape "$shape" --optimizer "$optimizer" --loss "$loss" \
    --target-batch 1024 --budget 4GB --measure --measure-at "$SIZES" --json |
    python3 -c '
import json, sys
model, optimizer, loss = sys.argv[1:4]
plan = json.load(sys.stdin)
for m in plan["measurements"]:
    size, p, r = m["micro_batch"], m["predicted_peak_bytes"], m["measured_peak_bytes"]
    print(f"| `{model}` | {optimizer} | {loss} | {size} | {p} | {r} | {100 * (p - r) / r:+.3f}% |")
' "$model" "$optimizer" "$loss"
done <<'CASES'
linear(784,512) relu linear(512,512) relu linear(512,10)|784|sgd|cross-entropy
linear(784,512) relu linear(512,512) relu linear(512,10)|784|adam|cross-entropy
linear(64,128) tanh linear(128,10)|64|adamw|cross-entropy
linear(32,96) gelu linear(96,96) sigmoid linear(96,1)|32|adam|mse
linear(20,64) relu dropout(0.2) linear(64,3)|20|sgd|mse
linear(3,8) tanh linear(8,1)|3|sgd|mse
conv2d(1,8,3,padding=1) relu maxpool2d(2) flatten linear(128,10)|1x8x8|adam|cross-entropy
conv2d(3,16,3,padding=1) relu conv2d(16,16,3,stride=2,padding=1) relu adaptiveavgpool2d(1) flatten linear(16,10)|3x16x16|sgd|cross-entropy
conv2d(3,16,3,padding=1,bias=false) batchnorm2d(16) relu maxpool2d(2) conv2d(16,32,3,padding=1) batchnorm2d(32) relu adaptiveavgpool2d(1) flatten linear(32,16) batchnorm1d(16) relu linear(16,10)|3x16x16|adam|cross-entropy
CASES
