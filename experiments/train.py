r"""Trains a multi-task model from a config and reports per-task test metrics and throughput.

  python -m experiments.train --config configs/multifashion.py --workdir /tmp/mf
  python -m experiments.train --config configs/multifashion.py:left --workdir /tmp/mf_left \
      --config.num_steps=500

Re-running with the same --workdir resumes from the latest checkpoint.
"""
from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mtl import distributed
from mtl import evaluate as evaluate_lib
from mtl.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_STOP_AT = flags.DEFINE_integer("stop_at_step", None, "End this job after that step with a checkpoint "
                                "(the schedule still follows config.num_steps); re-run to resume.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  distributed.initialize_from_env()
  result = loop.train_and_evaluate(config, _WORKDIR.value, stop_at_step=_STOP_AT.value)
  if result.get("preempted"):
    print(f"stopped at step {result['step']}; checkpoint saved, re-run the same command to resume")
    return
  print(f"\ntest metrics after {result['step']} steps ({config.dataset.name}):")
  print(evaluate_lib.format_table(result["test"]))
  print(f"throughput: {result['steps_per_second']:.2f} steps/s, {result['examples_per_second']:.0f} examples/s "
        f"(batch {config.batch_size})")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
