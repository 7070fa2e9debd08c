#!/usr/bin/env bash
# One command per run of the fashion-scenes-32 controllability benchmark (docs/control_fashion_scenes.md).
# Usage: experiments/run_fashion_scenes32.sh RUN [STEPS] [SEED] [BATCH]   (RUN: w1 w0.75 w0.5 w0.25 ctrl ctrl_cikd
#        ctrl_distill ctrl_none, each ctrl* optionally followed by _sw<X>: students' task-loss weight X, and/or by
#        _c<digits>: the students' encoder counts per width, ascending, e.g. ctrl_none_sw0.5_c1331, and/or by
#        _h<digits>: the students' head-width counts, e.g. ctrl_none_h1331, and/or by _po: a private readout
#        per head width, e.g. ctrl_none_h1331_po), and/or last by _u: the uniform middle configurations (widths 0.5
#        and 0.75) trained every step, e.g. ctrl_none_u, or _u1: one of them per step, round robin
#        (uniform_per_step=1), and/or last by _sl: sliced students sharing one head width across tasks (sliced=1),
#        e.g. ctrl_none_u_sl, ctrl_none_sw0.25_u1_sl;
#        writes workdirs/runs/fs32_<RUN>_s<SEED>_<STEPS>_b<BATCH> and its train.log (DRY_RUN=1: print the config and
#        workdir only).
set -euo pipefail
shopt -s extglob
run=$1; steps=${2:-3000}; seed=${3:-0}; batch=${4:-32}
common="res=32,steps=$steps,batch=$batch,seed=$seed"
base=$run
if [[ $base == ctrl*_sl ]]; then base=${base%_sl}; common="$common,sliced=1"; fi
if [[ $base == ctrl*_u1 ]]; then base=${base%1}; common="$common,uniform_per_step=1"; fi   # then _u below
if [[ $base == ctrl*_u ]]; then base=${base%_u}; common="$common,uniform=0.5+0.75"; fi
if [[ $base == ctrl*_po ]]; then base=${base%_po}; common="$common,private_out=1"; fi
if [[ $base == ctrl*_h+([0-9]) ]]; then
  digits=${base##*_h}; base=${base%_h*}; common="$common,head_counts=$(echo "$digits" | sed 's/./&+/g; s/+$//')"
fi
if [[ $base == ctrl*_c+([0-9]) ]]; then
  digits=${base##*_c}; base=${base%_c*}; common="$common,encoder_counts=$(echo "$digits" | sed 's/./&+/g; s/+$//')"
fi
if [[ $base == ctrl*_sw* ]]; then common="$common,student_weight=${base##*_sw}"; base=${base%_sw*}; fi
case $base in
  w*) cfg="configs/fashion_scenes.py:$common,width=${run#w}" ;;
  ctrl) cfg="configs/control_fashion_scenes.py:$common,cikd=1,distill=1" ;;
  ctrl_cikd) cfg="configs/control_fashion_scenes.py:$common,cikd=1,distill=0" ;;
  ctrl_distill) cfg="configs/control_fashion_scenes.py:$common,cikd=0,distill=1" ;;
  ctrl_none) cfg="configs/control_fashion_scenes.py:$common,cikd=0,distill=0" ;;
  *) echo "unknown run $run" >&2; exit 2 ;;
esac
dir=workdirs/runs/fs32_${run}_s${seed}_${steps}_b${batch}
[[ ${DRY_RUN:-0} == 1 ]] && { echo "$cfg $dir"; exit 0; }   # a dry run creates nothing
mkdir -p "$dir"
exec nice -n 5 python3 -m experiments.train --config "$cfg" --workdir "$dir" > "$dir/train.log" 2>&1
