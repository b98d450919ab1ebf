#!/usr/bin/env bash
# The speed benchmarks on a GPU in under 5 minutes; one JSON object per line (device name first).
#   bash benchmarks/gpu_check.sh [DATA_ROOT]        (DEVICE=cpu for a dry run; EPOCHS=1 by default)
set -euo pipefail
cd "$(dirname "$0")"
ROOT="${1:-${DDRM_DATA:-../../shared/data}}"
DEVICE="${DEVICE:-cuda}"
EPOCHS="${EPOCHS:-1}"
python - "$DEVICE" <<'PY'
import json, sys, torch
dev = sys.argv[1]
print(json.dumps({"check": "device", "requested": dev, "cuda_available": torch.cuda.is_available(),
                  "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                  "torch": torch.__version__, "cuda": torch.version.cuda}))
PY
python bench_eval.py --data-root "$ROOT" --device "$DEVICE"
python bench_eval.py --data gowalla --data-root "$ROOT" --device "$DEVICE" --repeats 3
python bench_backends.py --data-root "$ROOT" --device "$DEVICE" --epochs "$EPOCHS"
python bench_ddrm.py --data-root "$ROOT" --device "$DEVICE" --epochs "$EPOCHS"
python bench_backends.py --data gowalla --data-root "$ROOT" --device "$DEVICE" --epochs "$EPOCHS" --backends mf lightgcn
python bench_ddrm.py --data gowalla --data-root "$ROOT" --device "$DEVICE" --epochs "$EPOCHS" --no-bf16
