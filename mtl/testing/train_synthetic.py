r"""Trains the in-memory synthetic dataset through the real loop (used by multi-process tests and demos).

  python -m launch.local --num_processes 2 --devices_per_process 4 -- \
      python -m mtl.testing.train_synthetic --workdir /tmp/syn --num_steps 4
"""
from __future__ import annotations

import argparse
import json

from mtl import distributed
from mtl.train import loop


def synthetic_config(num_steps: int = 4, every_steps: int = 100):
  """A tiny conv model on the synthetic two-task dataset."""
  from configs import common
  c = common.base_config()
  c.dataset.name = "synthetic"
  c.num_steps = num_steps
  c.batch_size = 16
  c.eval_batch_size = 16
  c.log_every = 2
  c.checkpoint.every_steps = every_steps
  c.optimizer.learning_rate = 3e-3
  c.model.encoder.name = "conv"
  c.model.encoder.stage_channels = (8, 16)
  c.model.head.hidden_dim = 16
  return c


def restored_params(workdir: str) -> tuple[dict, int]:
  """(host copy of the latest checkpoint's params, its step) of a run in `workdir`."""
  import jax
  _, state, step = loop.restore_experiment(workdir)
  return jax.device_get(state.params), step


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num_steps", type=int, default=4)
  args = parser.parse_args(argv)
  distributed.initialize_from_env()
  result = loop.train_and_evaluate(synthetic_config(args.num_steps), args.workdir, progress=False)
  print(json.dumps({"step": result["step"], "test": result["test"]}))
  return result


if __name__ == "__main__":
  main()
