#!/usr/bin/env bash
# Waits until the queued resource's TPU is ACTIVE, polling every POLL_SECONDS. create.sh does
# this after queueing the request; run it again if that wait was interrupted.
#   launch/wait.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
no_arguments
if [[ $MODE != queued* ]]; then die "MODE is $MODE: only a queued request needs waiting for"; fi

while :; do
  state=$(tpus queued-resources describe "$QUEUED_RESOURCE" --format='value(state.state)')
  if (( DRY_RUN )); then break; fi
  echo "$QUEUED_RESOURCE: $state" >&2
  case $state in
    ACTIVE) break ;;
    FAILED | SUSPENDED)
      die "the queued resource $QUEUED_RESOURCE is $state: delete.sh, then create.sh again" ;;
  esac
  sleep "$POLL_SECONDS"
done
