#!/usr/bin/env bash
# Deletes the TPU, and in the queued modes its queued resource, without asking for confirmation.
# The workdir and the prepared data stay in Cloud Storage.
#   launch/delete.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
no_arguments

if [[ $MODE == queued* ]]; then
  # --force deletes the queued resource's TPU with it.
  tpus queued-resources delete "$QUEUED_RESOURCE" --force --quiet
else
  tpus tpu-vm delete "$TPU_NAME" --quiet
fi
