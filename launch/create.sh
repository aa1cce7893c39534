#!/usr/bin/env bash
# Creates the TPU, one host or a pod slice, as MODE says (settings.sh). A queued request is then
# waited for until its TPU is ACTIVE.
#   launch/create.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
no_arguments

spot=()
if [[ $MODE == *spot ]]; then spot=(--spot); fi

if [[ $MODE == queued* ]]; then
  tpus queued-resources create "$QUEUED_RESOURCE" --node-id="$TPU_NAME" \
    --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" "${spot[@]}"
  exec "$LAUNCH_DIR/wait.sh" "$@"
else
  tpus tpu-vm create "$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
    --version="$RUNTIME_VERSION" "${spot[@]}"
fi
