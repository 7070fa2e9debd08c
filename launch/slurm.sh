#!/usr/bin/env bash
# SLURM launcher for GPU clusters: one task per GPU, jax.distributed finds the coordinator from SLURM's env.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh configs/multifashion.py /shared/workdirs/mf [--config.x=y ...]
#
#SBATCH --job-name=mtl
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=%x-%j.out
set -euo pipefail
CONFIG=${1:?usage: sbatch launch/slurm.sh CONFIG WORKDIR [overrides...]}
WORKDIR=${2:?usage: sbatch launch/slurm.sh CONFIG WORKDIR [overrides...]}
shift 2
# SIGTERM (sent 120 s before the time limit, or on preemption) makes the loop checkpoint and exit; --requeue
# restarts the job, which resumes from that checkpoint in the same workdir.
export MTL_AUTO_DISTRIBUTED=1
srun --kill-on-bad-exit=1 python -m experiments.train --config "$CONFIG" --workdir "$WORKDIR" "$@"
