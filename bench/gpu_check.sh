#!/usr/bin/env bash
# Checks alexnet_tf's training speed on an NVIDIA GPU machine in under 5 minutes.
#
#     bash bench/gpu_check.sh
#
# Prints nvidia-smi, writes a small JPEG tree into a temporary folder, then runs
# `python -m alexnet_tf.benchmark --mode=train --distribution_strategy=mirrored`
# on synthetic data and on the tree, in float32 and bfloat16. Each run prints its
# images per second, and nvidia-smi samples the GPU's utilization and memory once
# a second meanwhile. It installs nothing but alexnet_tf itself (`pip install -e .`)
# when Python cannot import it, and it fails at once without a GPU.
#
# Environment variables, all optional:
#   PYTHON             the Python to use; default python3.
#   GLOBAL_BATCH_SIZE  images per step over all GPUs; default 512.
#   VARIANT            an alexnet_tf variant; default torchvision.
#   RUN_TIMEOUT        seconds after which one run is stopped; default 60.

set -euo pipefail

cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
batch_size="${GLOBAL_BATCH_SIZE:-512}"
variant="${VARIANT:-torchvision}"
run_timeout="${RUN_TIMEOUT:-60}"

fail() {
  echo "error: $*" >&2
  exit 1
}

check_gpu() {
  command -v nvidia-smi >/dev/null \
    || fail "nvidia-smi not found. This script needs a machine with an NVIDIA GPU and its driver."
  local gpu_list
  gpu_list="$(nvidia-smi -L)" \
    || fail "nvidia-smi -L failed: the NVIDIA driver does not answer. Check it with nvidia-smi."
  grep -q '^GPU' <<<"$gpu_list" \
    || fail "nvidia-smi lists no GPU. Run this script on a machine with an NVIDIA GPU."
  if ! "$python" -c 'import alexnet_tf' 2>/dev/null; then
    echo "alexnet_tf is not importable with $python: installing it with pip install -e ."
    "$python" -m pip install -e .
  fi
  local num_gpus
  num_gpus="$(TF_CPP_MIN_LOG_LEVEL=3 "$python" -c \
    'import tensorflow as tf; print(len(tf.config.list_physical_devices("GPU")))')"
  [[ "$num_gpus" -gt 0 ]] \
    || fail "TensorFlow in $python sees no GPU, although nvidia-smi does. Install a CUDA" \
      "build of TensorFlow, for example with pip install -e '.[gpu]', and run again."
  echo "TensorFlow sees $num_gpus GPU(s)."
}

# Writes 10 classes of 100 training JPEGs into $1: the photo crops of
# bench/make_jpeg_tree.py where scikit-image and scikit-learn are installed,
# else smooth random images drawn with NumPy and saved by Pillow.
make_jpeg_tree() {
  local output_dir="$1"
  if "$python" -c 'import skimage, sklearn' 2>/dev/null; then
    "$python" bench/make_jpeg_tree.py --output_dir="$output_dir"
    return
  fi
  echo "scikit-image or scikit-learn is missing: writing smooth random JPEGs instead."
  "$python" - "$output_dir" <<'EOF'
import os
import sys

import numpy as np
from PIL import Image

output_dir = sys.argv[1]
rng = np.random.default_rng(0)
for class_index in range(10):
    folder = os.path.join(output_dir, "train", f"class_{class_index:02d}")
    os.makedirs(folder)
    for image_index in range(100):
        # A coarse random grid scaled up to 500x375 gives smooth files of about
        # 20 kB. Noise at full size would give files much larger than photos.
        grid = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        image = Image.fromarray(grid).resize((500, 375), Image.BILINEAR)
        image.save(os.path.join(folder, f"image_{image_index:03d}.JPEG"), quality=90)
EOF
}

# Prints the mean and maximum GPU utilization and the peak memory of the
# samples in the CSV file $1 (lines "utilization, memory" of every GPU).
summarize_samples() {
  awk -F', *' '
    NF >= 2 && $1 ~ /^[0-9]+$/ {
      samples++; total += $1; if ($1 > busiest) busiest = $1
      if ($1 > 0) { busy_samples++; busy_total += $1 }
      if ($2 > memory) memory = $2
    }
    END {
      if (!samples) { print "  GPU samples: none"; exit }
      printf "  GPU utilization: mean %.0f%% over %d samples (start-up included), ", \
        total / samples, samples
      printf "mean %.0f%% over the %d samples above 0%%, max %d%%; memory used up to %d MiB\n", \
        busy_samples ? busy_total / busy_samples : 0, busy_samples, busiest, memory
    }' "$1"
}

# Runs one training benchmark with --data=$1 and --dtype=$2 while sampling the GPU.
run_benchmark() {
  local data="$1" dtype="$2"
  local samples_file="$work_dir/gpu_${data}_${dtype}.csv"
  local args=(
    --mode=train --distribution_strategy=mirrored --variant="$variant" --dtype="$dtype"
    --global_batch_size="$batch_size" --data="$data"
  )
  # NOTE: the step counts rest on estimates, not on a GPU run. At batch 512 a
  # recent GPU should take 10 to 40 ms per synthetic step. Real data is limited
  # by decoding on the CPU: at the 1.3 ms of CPU per image of bench/README.md,
  # about 12,000 images/s on 16 cores. Each run should last 5 to 45 seconds.
  if [[ "$data" == real ]]; then
    args+=(--dataset=folder --data_dir="$work_dir/jpeg_tree"
           --warmup_batches=10 --num_windows=5 --window_batches=20)
  else
    args+=(--warmup_batches=50 --num_windows=10 --window_batches=100)
  fi

  echo
  echo "== train, $data data, $dtype, global batch $batch_size, $variant =="
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
    >"$samples_file" &
  sampler_pid=$!
  local status=0
  TF_CPP_MIN_LOG_LEVEL=2 timeout "$run_timeout" "$python" -m alexnet_tf.benchmark "${args[@]}" \
    || status=$?
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  summarize_samples "$samples_file"
  if [[ "$status" -eq 124 ]]; then
    echo "  FAILED: stopped after RUN_TIMEOUT=$run_timeout seconds"
  elif [[ "$status" -ne 0 ]]; then
    echo "  FAILED with exit code $status; its error is above"
  fi
  return "$status"
}

cleanup() {
  if [[ -n "${sampler_pid:-}" ]]; then
    kill "$sampler_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
}

check_gpu
nvidia-smi

work_dir="$(mktemp -d)"
sampler_pid=""
trap cleanup EXIT
make_jpeg_tree "$work_dir/jpeg_tree"

failed=()
for dtype in float32 bfloat16; do
  for data in synthetic real; do
    run_benchmark "$data" "$dtype" || failed+=("$data $dtype")
  done
done

echo
if [[ "${#failed[@]}" -gt 0 ]]; then
  fail "these runs failed: $(printf '%s; ' "${failed[@]}")see their errors above."
fi
echo "All four runs finished."
