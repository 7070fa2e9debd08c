"""Why MoCo fails on MultiFashion: MoCo variants beside equal weighting, over optimizers and learning rates.

  python -m experiments.probe_moco --workdir /tmp/probe_moco --json docs/probe_moco.json [--seed 0] [--steps 300]

Each row trains `configs/multifashion.py` for --steps steps (the benchmark's MultiFashion schedule is 300) with one
method, optimizer and peak learning rate, and reads the test accuracies. Variants (`config.mtl.kwargs` of 'moco'):
  moco             the paper's defaults (beta 0.5, beta_sigma 0.5: tracking rate 0.5 / sqrt(t))
  moco_softmax     lambda_update='softmax' (LibMTL's lambda rule)
  moco_constant    beta_sigma=0 (constant tracking rate 0.5)
  moco_no_tracking beta=1, beta_sigma=0 (Y = this step's scaled gradients; the rest of MoCo unchanged)
A workdir that already holds results.json is reused. Prints a table and writes --json.
"""
from __future__ import annotations

import argparse
import json
import os

from tqdm import tqdm

from configs import multifashion
from mtl.train import loop

VARIANTS = {"equal": ("equal", {}), "moco": ("moco", {}), "moco_softmax": ("moco", {"lambda_update": "softmax"}),
            "moco_constant": ("moco", {"beta_sigma": 0.0}),
            "moco_no_tracking": ("moco", {"beta": 1.0, "beta_sigma": 0.0})}
# (variant, optimizer, peak learning rate); adam 3e-3 is configs/multifashion.py's own setting.
GRID = ([(v, "adam", 3e-3) for v in VARIANTS]
        + [(v, "adam", lr) for lr in (1e-3, 3e-4, 1e-4) for v in ("equal", "moco")]
        + [(v, "momentum", lr) for lr in (0.03, 0.1) for v in ("equal", "moco")])


def run_one(variant: str, optimizer: str, lr: float, seed: int, steps: int, workdir: str) -> dict:
  """Trains (or reuses) one row; returns {'left': acc, 'right': acc} (test accuracy)."""
  method, kwargs = VARIANTS[variant]
  wd = os.path.join(workdir, f"{variant}_{optimizer}_{lr:g}_s{seed}_{steps}")
  c = multifashion.get_config(f"seed={seed},steps={steps}")
  c.mtl.method = method
  if kwargs:
    c.mtl.kwargs = kwargs
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = lr
  c.checkpoint.every_steps = steps
  result = loop.train_and_evaluate_or_reuse(c, wd)
  return {t: float(m["accuracy"]) for t, m in result["test"].items()}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--json", default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args(argv)
  if args.steps < 1:
    raise ValueError(f"--steps must be >= 1, got {args.steps}")
  rows = []
  for variant, optimizer, lr in tqdm(GRID, desc="probe_moco"):
    acc = run_one(variant, optimizer, lr, args.seed, args.steps, args.workdir)
    rows.append({"variant": variant, "optimizer": optimizer, "learning_rate": lr, "accuracy": acc})
  print(f"\nMultiFashion, seed {args.seed}, {args.steps} steps, test accuracy (left / right)")
  print(f"| {'variant':<17} | {'optimizer':<9} | {'lr':>7} | left   | right  |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['variant']:<17} | {r['optimizer']:<9} | {r['learning_rate']:>7g} | {r['accuracy']['left']:.4f} "
          f"| {r['accuracy']['right']:.4f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"dataset": "multifashion", "seed": args.seed, "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
