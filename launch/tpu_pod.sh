#!/usr/bin/env bash
# TPU pod launcher with gcloud TPU VMs: create, copy the repo, install, run on all workers, delete.
#
#   launch/tpu_pod.sh create  NAME ZONE ACCELERATOR [VERSION]   # e.g. my-pod us-central2-b v4-32 tpu-ubuntu2204-base
#   launch/tpu_pod.sh copy    NAME ZONE                         # rsyncs this repo to every worker
#   launch/tpu_pod.sh install NAME ZONE                         # pip install jax[tpu] + this package on every worker
#   launch/tpu_pod.sh run     NAME ZONE CONFIG WORKDIR [overrides...]   # WORKDIR: on a disk all workers share
#   launch/tpu_pod.sh delete  NAME ZONE
set -euo pipefail
cmd=${1:?command: create|copy|install|run|delete}
name=${2:?TPU name}
zone=${3:?zone}
shift 3
ssh_all() { gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"; }
case "$cmd" in
  create)
    accel=${1:?accelerator type, e.g. v4-32}
    version=${2:-tpu-ubuntu2204-base}
    gcloud compute tpus tpu-vm create "$name" --zone "$zone" --accelerator-type "$accel" --version "$version" ;;
  copy)
    gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all "$(git rev-parse --show-toplevel)" \
      "$name":~/mtl ;;
  install)
    ssh_all "cd ~/mtl && pip install -U 'jax[tpu]' && pip install -e ." ;;
  run)
    config=${1:?config}
    workdir=${2:?workdir}
    shift 2
    # On a pod, jax.distributed.initialize() discovers the workers by itself.
    ssh_all "cd ~/mtl && MTL_AUTO_DISTRIBUTED=1 python -m experiments.train --config $config --workdir $workdir $*" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone "$zone" --quiet ;;
  *)
    echo "unknown command $cmd; expected create|copy|install|run|delete" >&2; exit 2 ;;
esac
