#!/usr/bin/env bash
# README command 1: set up the environment if needed, generate the demo data, train the demo detector with
# tools/train.py, evaluate its last checkpoint with tools/test.py and print its COCO bbox mAP.
#   bash tools/quickstart.sh [CONFIG]        (default: the baseline demo Faster R-CNN; a demo segmenter config
#                                             prints its mIoU instead)
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONFIG="${1:-configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py}"
bash "$ROOT/tools/setup_env.sh"
PY="${MMDYNCONV_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
WORK_DIR="work_dirs/quickstart/$(basename "$CONFIG" .py)"
"$PY" tools/generate_demo_data.py --out data/demo --seed 0
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
CKPT="$(cat "$WORK_DIR/last_checkpoint")"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --out-metrics "$WORK_DIR/test_metrics.json"
"$PY" - "$WORK_DIR/test_metrics.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
if 'coco/bbox_mAP' in m:
    print(f"\nCOCO bbox mAP of the demo detector: {m['coco/bbox_mAP']:.3f} "
          f"(mAP@50 {m['coco/bbox_mAP_50']:.3f}, mAP@75 {m['coco/bbox_mAP_75']:.3f})")
else:  # a segmentation demo config
    print(f"\nmIoU of the demo segmenter: {m['mIoU']:.2f} (aAcc {m['aAcc']:.2f}, mAcc {m['mAcc']:.2f})")
PYEOF
