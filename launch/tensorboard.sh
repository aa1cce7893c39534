#!/usr/bin/env bash
# Runs TensorBoard here, on this machine, on the run's workdir in Cloud Storage. It reads gs://
# through TensorFlow (a requirement of this package) with the credentials of
# `gcloud auth application-default login`. Extra arguments go to tensorboard, e.g. --port=6007.
#   launch/tensorboard.sh [--dry-run] [TENSORBOARD_ARGS ...]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

run tensorboard --logdir="$WORKDIR" "${ARGS[@]}"
