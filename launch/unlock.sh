#!/usr/bin/env bash
# Frees the TPU on every worker after a crash left it held ("TPU in use" or libtpu lock errors):
# stops leftover training processes (SIGTERM, then SIGKILL), kills whatever else still has the TPU
# chips open (/dev/accel* on v4, /dev/vfio/* from v5e on: the `sudo lsof -w` that libtpu's own
# message suggests), and removes libtpu's lock file.
#   launch/unlock.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
no_arguments

# Expanded on the workers. "[.]" keeps pkill from matching the shell that runs this line.
# shellcheck disable=SC2016
on_workers all 'pkill -f "deeplab_jax[.]main" && sleep 10; pkill -9 -f "deeplab_jax[.]main";'\
' holders=$(sudo lsof -t -w /dev/accel* /dev/vfio/[0-9]* 2>/dev/null);'\
' if [ -n "$holders" ]; then sudo kill -9 $holders; fi; sudo rm -f /tmp/libtpu_lockfile'
