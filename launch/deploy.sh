#!/usr/bin/env bash
# Puts the code on every worker and installs it, with JAX for TPU, in a virtualenv there. Run it
# again after changing the code, and on every new TPU.
#   launch/deploy.sh [--dry-run]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
no_arguments

if [[ -n $REPO_URL ]]; then
  on_workers all "set -e; rm -rf $CODE_DIR; git clone -q $(quote "$REPO_URL") $CODE_DIR;\
 cd $CODE_DIR; git checkout -q $(quote "$REPO_REF")"
else
  # The tracked files as they are now: `git stash create` commits uncommitted edits aside (no
  # branch or file changes) and prints nothing when there are none.
  snapshot=$(git -C "$REPO_DIR" stash create)
  tarball=${TMPDIR:-/tmp}/deeplab_jax_$$.tar.gz
  trap 'rm -f "$tarball"' EXIT
  run git -C "$REPO_DIR" archive --prefix=deeplab_jax/ --output="$tarball" "${snapshot:-HEAD}"
  tpus tpu-vm scp "$tarball" "$TPU_NAME:deeplab_jax.tar.gz" --worker=all
  on_workers all "set -e; rm -rf $CODE_DIR; tar -xzf ~/deeplab_jax.tar.gz -C ~;\
 rm ~/deeplab_jax.tar.gz"
fi

# The virtualenv is made once, with PYTHON from Ubuntu's packages (the lock timeout waits out the
# updates a new VM runs at boot); the `tpu` extra brings jax[tpu], which brings libtpu.
on_workers all "set -e; if [ ! -x $VENV_DIR/bin/pip ]; then sudo apt-get -qq update;\
 sudo apt-get -qq -o DPkg::Lock::Timeout=600 install -y $PYTHON-venv; $PYTHON -m venv $VENV_DIR;\
 fi; . $VENV_DIR/bin/activate; cd $CODE_DIR;\
 python -m pip install -q --upgrade pip; python -m pip install -q -e \".[tpu]\""
