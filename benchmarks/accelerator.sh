#!/usr/bin/env bash
# Accelerator figures, in one run on a GPU host that has JAX and torch but no network and no
# TensorFlow (nothing here imports it):
#   - the train step of configs/voc.py (DeepLab v3+ ResNet-101, output stride 16) at a fixed
#     crop and fixed batch sizes, in bfloat16 and float32: images/s, XLA's FLOPs and the MFU;
#   - its inference, images/s;
#   - torchvision's deeplabv3_resnet101 trained and run at the same batch and crop, with
#     automatic mixed precision (bfloat16) and in float32;
#   - the dense CRF on the accelerator against the CPU.
#
#   benchmarks/accelerator.sh                     # crop 513, batches 8 and 16: under 10 minutes
#   SIZE=65 BATCHES=2 STEPS=2 CRF_SIZE=64 \
#   OVERRIDES="--config.model.width=0.125 --config.model.aspp_features=16" \
#     benchmarks/accelerator.sh                   # the tiny setting, any CPU
#
# PEAK_BF16 and PEAK_FP32 are one device's peak TFLOP/s for the MFU (defaults: an H100/H200's
# dense bfloat16 tensor-core and float32 figures). Each measurement is a process of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE="${SIZE:-513}"
BATCHES="${BATCHES:-8 16}"
STEPS="${STEPS:-10}"
CRF_SIZE="${CRF_SIZE:-375}"
PEAK_BF16="${PEAK_BF16:-989}"
PEAK_FP32="${PEAK_FP32:-67}"
read -r -a overrides <<< "${OVERRIDES:-}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c 'import jax; print("devices:", jax.devices())'

for batch in $BATCHES; do
  for dtype in bfloat16 float32; do
    peak="$PEAK_BF16"; [ "$dtype" = float32 ] && peak="$PEAK_FP32"
    echo "== deeplab_jax configs/voc.py, $dtype, batch $batch, crop $SIZE"
    python benchmarks/throughput.py --config=configs/voc.py --config.model.dtype="$dtype" \
      "${overrides[@]}" --batch_size="$batch" --image_size="$SIZE" --steps="$STEPS" \
      --peak_tflops="$peak"
  done
  for amp in amp noamp; do
    for kind in train infer; do
      echo "== torchvision deeplabv3_resnet101, $kind, --$amp, batch $batch, crop $SIZE"
      python benchmarks/vs_torchvision.py --side=torch --work="${kind}_b${batch}_${SIZE}" \
        --torch_model=deeplabv3_resnet101 --torch_device="$(python -c \
          'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')" \
        --"$amp" --steps="$STEPS" --warmup=2
    done
  done
done

echo "== dense CRF, accelerator against CPU"
python benchmarks/crf_on_device.py --height="$CRF_SIZE" --width="$(( CRF_SIZE * 4 / 3 ))"
