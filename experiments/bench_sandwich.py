r"""Wall time of a sandwich step (controllable training) against a full-width fixed step, side by side.

  python -m experiments.bench_sandwich --config configs/control_fashion_scenes.py:res=32,batch=32 \
      --data_dir /tmp/data --rounds 5 --steps_per_round 8 --json docs/control_sandwich_speed.json

Builds the controllable experiment and times, on the same batch and the same process, (a) the standard step of
the same model at full width (what `configs/fashion_scenes.py` trains) and (b) the sandwich step (largest +
smallest + num_random covering students, CIKD and output distillation as configured). The sandwich runs steps 1 ..
rounds * steps_per_round of the schedule (make it a multiple of the covering block, 16 by default, so every
student appears in its share); every compiled variant those steps use is warmed up first (compile time excluded
and reported separately); rounds alternate (a) and (b), so load changes on a shared machine hit both. Reports the
median per-step time of each, their ratio (target <= 2) and the ratio of the means.
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time

import jax
from tqdm import tqdm

from mtl import sharding
from mtl.data import make_loader
from mtl.train import loop
from mtl.train.step import ScheduledStep, make_train_step


def _load_config(spec: str):
  path, _, arg = spec.partition(":")
  module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
  return module.get_config(arg or None)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--data_dir", default="")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps_per_round", type=int, default=8)
  p.add_argument("--json", default="")
  args = p.parse_args(argv)
  config = _load_config(args.config)
  if args.data_dir:
    config.dataset.data_dir = args.data_dir
  exp = loop.build_experiment(config)
  batch = next(iter(make_loader(config.dataset.name, "train", batch_size=config.batch_size,
                                data_dir=config.dataset.get("data_dir") or None)))
  batch = sharding.shard_batch(batch, exp.mesh)
  fixed = loop.jit_train_step(exp, make_train_step(exp.model, exp.tasks, exp.tx, exp.method, exp.info.input_key))
  scheduled = loop.build_train_step(exp)
  sandwich = loop.step_runner(exp, scheduled)
  state_f, state_s = exp.state, jax.tree.map(lambda x: x.copy(), exp.state)
  t0 = time.perf_counter()
  state_f, m = fixed(state_f, batch)
  jax.block_until_ready(m)
  compile_fixed = time.perf_counter() - t0
  t0 = time.perf_counter()
  # Warm every compiled variant the timed steps use (steps 1 .. rounds * steps_per_round, timed below): one step
  # per distinct key, so no compilation falls inside a timed round.
  timed = args.rounds * args.steps_per_round
  key_for_step = scheduled.key_for_step if isinstance(scheduled, ScheduledStep) else (lambda s: None)
  firsts = {}
  for s in range(1, timed + 1):
    firsts.setdefault(key_for_step(s), s)
  for s in sorted(firsts.values()):
    state_s, m = sandwich(state_s, batch, s)
  warm_steps = len(firsts)
  jax.block_until_ready(m)
  compile_sandwich = time.perf_counter() - t0
  times = {"fixed": [], "sandwich": []}
  step = 0
  for _ in tqdm(range(args.rounds), desc="rounds"):
    t0 = time.perf_counter()
    for _ in range(args.steps_per_round):
      state_f, m = fixed(state_f, batch)
    jax.block_until_ready(m)
    times["fixed"].append((time.perf_counter() - t0) / args.steps_per_round)
    t0 = time.perf_counter()
    for _ in range(args.steps_per_round):
      step += 1
      state_s, m = sandwich(state_s, batch, step)
    jax.block_until_ready(m)
    times["sandwich"].append((time.perf_counter() - t0) / args.steps_per_round)
  med = {k: statistics.median(v) for k, v in times.items()}
  result = {"config": args.config, "batch_size": config.batch_size, "control": config.control.to_dict(),
            "rounds": args.rounds, "steps_per_round": args.steps_per_round,
            "fixed_step_s": med["fixed"], "sandwich_step_s": med["sandwich"],
            "ratio": med["sandwich"] / med["fixed"], "per_round_s": times,
            "ratio_of_means": statistics.mean(times["sandwich"]) / statistics.mean(times["fixed"]),
            "warmup_s": {"fixed": compile_fixed, "sandwich": compile_sandwich, "sandwich_warm_steps": warm_steps},
            "devices": str(jax.devices()), "target_ratio": 2.0}
  print(f"{'step':<10}{'median s/step':>15}")
  print(f"{'fixed':<10}{med['fixed']:>15.4f}\n{'sandwich':<10}{med['sandwich']:>15.4f}\nratio {result['ratio']:.2f} "
        f"(of means {result['ratio_of_means']:.2f})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2, default=str)
  return result


if __name__ == "__main__":
  main()
