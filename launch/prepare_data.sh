#!/usr/bin/env bash
# Prepares the recipe's dataset once into DATA_DIR, on worker 0 alone: `--mode=prepare` touches no
# TPU, and every worker of every later run reads the prepared data from there. Extra arguments are
# config overrides.
#   launch/prepare_data.sh [--dry-run] [--config.FIELD=VALUE ...]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

on_workers 0 "$ENTER; $(main_command --mode=prepare "${ARGS[@]}")"
