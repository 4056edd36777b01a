#!/usr/bin/env bash
# The GPU checks of a session that is lent a device machine, as one prepared command (the device tool's `run`
# gives 15 minutes of device time a session, at most 10 a command). From the repo root on that machine:
#
#     bash scripts/device_check.sh            # run(command="bash scripts/device_check.sh", timeout_s=590)
#
# It uses the machine's own python3 (its PyTorch, onnx, onnxruntime, OpenCV and scikit-image; nothing is installed)
# and writes into $OUT (the device tool's folder; ./device_out elsewhere), each step under its own time limit, so a
# failing or slow step leaves the others' files:
#
#   facts.txt            GPU, driver, python3 and package versions, torch.cuda's view
#   tests.log            the `gpu`-marked tests (pytest with a minimal ini: the machine has no pytest-qt)
#   pretrain_bench.json  bench/pretrain.py --device cuda --preset r18-128 (engine vs. DataLoader baseline, FLOP share)
#   quality.json, .log   bench/quality.py on one surface and seed, pretrained on the GPU with the CPU recipe's crops,
#                        batch and learning rate, for EPOCHS epochs (default 150, ten times the CPU benchmark's) within
#                        QUALITY_MINUTES (3) of pretraining; fit, export and predict run as on any machine
#   dev.json             bench/dev_maps.py on that model and the development set (seed 7, never the test set)
#
# Open question it answers (issue 10, bench/RESULTS.md "Why gravel fails"): does far more pretraining than the CPU
# budget lift gravel? Compare dev.json with the CPU runs' development figures (gravel seed 0, 15 epochs: image AUROC
# 0.714-0.722, pixel 0.724-0.728 on three CPU VMs; models differ by machine, RESULTS "One seed, three machines") and
# quality.json with the test-set table. A dry run on a CPU machine checks the plumbing:
#
#     DEVICE=cpu EPOCHS=1 QUALITY_MINUTES=1 QUALITY_SLACK=900 PY=.venv/bin/python bash scripts/device_check.sh
#
# The steps' limits add up to under 10 minutes (90 + 90 + 330 + 60 s and the data), one device command.
set -u
OUT=${OUT:-device_out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SURFACE=${SURFACE:-gravel}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-150}
QUALITY_MINUTES=${QUALITY_MINUTES:-3}
QUALITY_SLACK=${QUALITY_SLACK:-150}  # s for data, fit, export and predict after the pretraining budget
WORK=${WORK:-/tmp/sslinspect_device}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 QT_QPA_PLATFORM=offscreen
step() { echo "== $(date -u +%H:%M:%S) $*"; }

step facts
{
    nvidia-smi 2>&1 | head -20
    "$PY" - <<'EOF' 2>&1
import platform, importlib.metadata as md
import torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))
for name in ("torchvision", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless",
             "scikit-image", "numpy"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "-")
EOF
} >"$OUT/facts.txt"
cat "$OUT/facts.txt"

step gpu tests
INI="$WORK/pytest.ini"  # the project's pyproject asks for pytest-qt (qt_api) under --strict-config
printf '[pytest]\npythonpath = .\nmarkers =\n    slow: long\n    gpu: needs CUDA\n    gui: Qt\n' >"$INI"
timeout 90 "$PY" -m pytest -c "$INI" --rootdir . -q -m gpu -p no:cacheprovider \
    tests/core/train/test_gpu.py tests/core/methods/test_cuda_recipe.py tests/core/test_loader.py \
    tests/core/fewshot/test_feature_precision.py tests/core/infer/test_predict.py >"$OUT/tests.log" 2>&1
echo "rc $?" >>"$OUT/tests.log"
tail -n 5 "$OUT/tests.log"

if [ "$DEVICE" = cuda ]; then
    step pretrain benchmark
    timeout 90 "$PY" bench/pretrain.py --device cuda --preset r18-128 >"$OUT/pretrain_bench.json" 2>"$WORK/pretrain_bench.err"
    echo "rc $?"
    tail -n 3 "$WORK/pretrain_bench.err"
fi

step quality "$SURFACE" seed "$SEED", "$EPOCHS" epochs, at most "$QUALITY_MINUTES" min of pretraining
timeout $((QUALITY_MINUTES * 60 + QUALITY_SLACK)) "$PY" bench/quality.py --surfaces "$SURFACE" --seeds "$SEED" \
    --epochs "$EPOCHS" --max-minutes "$QUALITY_MINUTES" --no-floors --set "pretrain.device=$DEVICE" \
    --work "$WORK/quality" --out "$OUT/quality.json" >"$WORK/quality.stdout" 2>"$OUT/quality.log"
echo "rc $?"
grep '^|' "$OUT/quality.log" | tail -n 2  # the table's surface row and mean

step development set
MODEL="$WORK/quality/models/$SURFACE-s$SEED/model.onnx"
DEV="$WORK/dev/$SURFACE"
if [ -f "$MODEL" ]; then
    "$PY" -c "import sys; from pathlib import Path; from bench.quality_data import SetParams, generate_surface
generate_surface(Path(sys.argv[1]), SetParams(sys.argv[2], seed=7, n_train=60))" "$DEV" "$SURFACE" &&
        timeout 60 "$PY" bench/dev_maps.py --model "$MODEL" --test "$DEV/$SURFACE" --out "$OUT/dev.json" \
            >"$WORK/dev.log" 2>&1
    echo "rc $?"
    tail -n 3 "$WORK/dev.log"
else
    echo "no model at $MODEL: see quality.log"
fi
step done
