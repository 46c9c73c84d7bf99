#!/usr/bin/env bash
# The README's first Quickstart command: set up .venv, build a tiny Qwen checkpoint, and run the
# `support` workflow end to end on it through the real in-process engine (constrained decoding).
#
# The tiny checkpoint has random weights (no model hub here): the run is real but the reply is
# gibberish. With a real model: .venv/bin/tq run support --input "..." --model Qwen/Qwen2.5-1.5B-Instruct
#
# Environment: TQ_SKIP_SETUP=1 reuses an existing .venv; TQ_QUICKSTART_DIR (default .tq) holds the
# checkpoint, the run store and the demo shop.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TQ_SKIP_SETUP:-0}" != 1 ]; then
  TQ_EXTRAS="${TQ_EXTRAS:-local}" bash scripts/setup.sh
fi
DIR="${TQ_QUICKSTART_DIR:-.tq}"
MODEL="$DIR/tiny-qwen2.5"
export TQ_STORE="${TQ_STORE:-$DIR/runs.sqlite}"
export TQ_SHOP_DB="${TQ_SHOP_DB:-$DIR/shop.db}"
TQ=.venv/bin/tq
if [ ! -f "$MODEL/config.json" ]; then
  "$TQ" model tiny "$MODEL"
fi
"$TQ" list
"$TQ" run support --input "我的订单 A1001 什么时候到？" --model "$MODEL" --max-turns 12 --deadline 300
"$TQ" runs --limit 3
echo "quickstart: done (store $TQ_STORE; try: $TQ replay <run id> --store $TQ_STORE)"
