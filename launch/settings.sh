# shellcheck shell=bash disable=SC2034  # The variables are for the scripts that source this.
# Settings of the launch scripts, all in one place. Each line is a default that the environment
# overrides, e.g. `ACCELERATOR_TYPE=v4-32 launch/create.sh`. Sourced by common.sh.

# The Google Cloud project (required) and the zone of the TPU (v4 is in us-central2-b).
: "${PROJECT:?set PROJECT to your Google Cloud project id}"
: "${ZONE:=us-central2-b}"

# The TPU: one host (v4-8) or a pod slice of several hosts (v4-32, v5litepod-32).
: "${TPU_NAME:=deeplab-jax}"
: "${ACCELERATOR_TYPE:=v4-8}"
# Its software: tpu-ubuntu2204-base for v4, v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for
# v5p, v2-alpha-tpuv6e for v6e.
: "${RUNTIME_VERSION:=tpu-ubuntu2204-base}"
# How it is obtained: on-demand; spot (cheaper, preemptible); queued or queued-spot (a queued
# resource named QUEUED_RESOURCE waits for capacity, polled every POLL_SECONDS, instead of failing
# when there is none).
: "${MODE:=on-demand}"
: "${QUEUED_RESOURCE:=$TPU_NAME-queued}"
: "${POLL_SECONDS:=60}"

# The run: its recipe, and its workdir gs://BUCKET/RUN_NAME (checkpoints, TensorBoard summaries).
: "${BUCKET:?set BUCKET to the name of your Cloud Storage bucket, without gs://}"
: "${CONFIG:=configs/voc.py}"
: "${RUN_NAME:=voc}"
# Datasets are prepared once into DATA_DIR; archives that cannot be downloaded (Cityscapes) are
# read from MANUAL_DIR (default: DATA_DIR/downloads/manual).
: "${DATA_DIR:=gs://$BUCKET/tensorflow_datasets}"
: "${MANUAL_DIR:=}"

# The code on the workers: REPO_URL cloned at REPO_REF (a branch, tag or commit), or, when
# REPO_URL is empty, the tracked files of this working tree, uncommitted edits included.
: "${REPO_URL:=}"
: "${REPO_REF:=main}"
# The Python the workers' virtualenv is made with (the package needs 3.11 or later; the TPU
# images have Ubuntu 22.04's 3.10, so deploy installs it from Ubuntu's packages).
: "${PYTHON:=python3.11}"

WORKDIR=gs://$BUCKET/$RUN_NAME
