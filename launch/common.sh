# shellcheck shell=bash disable=SC2034,SC2088  # Variables for the scripts; ~ expands on workers.
# Sourced by every launch script with the script's arguments: strict mode, the settings,
# --dry-run, and the helpers that print each command before running it.
set -euo pipefail
if (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 404 )); then
  echo "$0 needs bash 4.4 or later (on macOS: brew install bash)" >&2
  exit 1
fi

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$LAUNCH_DIR")
source "$LAUNCH_DIR/settings.sh"

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

case $MODE in
  on-demand | spot | queued | queued-spot) ;;
  *) die "MODE is '$MODE'; it must be on-demand, spot, queued or queued-spot" ;;
esac

# --dry-run, anywhere among the arguments, prints the commands without running them. The
# other arguments are left in ARGS for the script.
DRY_RUN=0
ARGS=()
for arg in "$@"; do
  if [[ $arg == --dry-run ]]; then DRY_RUN=1; else ARGS+=("$arg"); fi
done

# For the scripts that take no arguments: a mistyped --dry-run must not create a TPU.
no_arguments() {
  if (( ${#ARGS[@]} )); then die "unexpected arguments: ${ARGS[*]}"; fi
}

# The arguments as one shell command line: words of plain characters stay bare, the others are
# single-quoted (only the value of a --flag=value, which reads better).
quote() {
  local word flag words=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      words+=("$word")
      continue
    fi
    flag=
    if [[ $word =~ ^--[A-Za-z0-9_.-]+= ]]; then flag=${BASH_REMATCH[0]}; fi
    word=${word#"$flag"}
    words+=("$flag'${word//\'/\'\\\'\'}'")
  done
  echo "${words[*]}"
}

# Prints a command (to stderr, so that output can still be captured), then runs it unless this
# is a dry run.
run() {
  echo "+ $(quote "$@")" >&2
  if (( ! DRY_RUN )); then "$@"; fi
}

# `gcloud compute tpus ...` in the settings' project and zone.
tpus() {
  run gcloud compute tpus "$@" --project="$PROJECT" --zone="$ZONE"
}

# Runs a shell command line on the TPU's workers: `all`, or one worker's index. (The command
# starts in the home directory and is expanded there, so ~ means the worker's home.)
on_workers() {
  tpus tpu-vm ssh "$TPU_NAME" --worker="$1" --command="$2"
}

# On each worker: the code, its virtualenv, and the log of this run.
CODE_DIR='~/deeplab_jax'
VENV_DIR='~/deeplab_jax_venv'
LOG_DIR='~/deeplab_jax_logs'
LOG_FILE="$LOG_DIR/$RUN_NAME.log"
# What a command that runs the package starts with on a worker.
ENTER="set -e; . $VENV_DIR/bin/activate; cd $CODE_DIR"

# The README's command line with the settings' recipe, workdir and data directories, and more
# arguments (--mode, config overrides) appended.
main_command() {
  local command=(python -m deeplab_jax.main --config="$CONFIG" --workdir="$WORKDIR"
                 --config.data_dir="$DATA_DIR")
  if [[ -n $MANUAL_DIR ]]; then command+=(--config.manual_dir="$MANUAL_DIR"); fi
  quote "${command[@]}" "$@"
}
