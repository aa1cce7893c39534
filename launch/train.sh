#!/usr/bin/env bash
# Starts training on every worker, detached from the SSH session; each worker writes its own log,
# ~/deeplab_jax_logs/RUN_NAME.log (launch/logs.sh follows it). Extra arguments are config overrides.
#
# After a crash or a preemption, run it again, on the recreated and redeployed TPU if it was lost:
# the program resumes from the latest checkpoint in the workdir, gs://BUCKET/RUN_NAME, by itself.
#   launch/train.sh [--dry-run] [--config.FIELD=VALUE ...]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

on_workers all "$ENTER; mkdir -p $LOG_DIR;\
 nohup $(main_command "${ARGS[@]}") < /dev/null >> $LOG_FILE 2>&1 &"
