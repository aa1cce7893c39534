#!/usr/bin/env bash
# Follows the training log of one worker (default 0), or of all of them at once with `all`.
#   launch/logs.sh [--dry-run] [WORKER]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if (( ${#ARGS[@]} > 1 )); then die "usage: launch/logs.sh [--dry-run] [WORKER]"; fi

on_workers "${ARGS[0]:-0}" "tail -n 100 -F $LOG_FILE"
