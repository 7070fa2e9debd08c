r"""GQA uptraining (Ainslie et al. 2023): a multi-head checkpoint -> grouped-query model, trained briefly.

  python -m experiments.uptrain_gqa --src_workdir /tmp/runs/lm_mha --workdir /tmp/runs/lm_gqa2 \
      --num_kv_heads 2 [--steps N] [--learning_rate LR] [--json OUT]

Reads the source run's config and latest checkpoint (a DecoderLM with the softmax mixer), mean-pools the
key and value projections of each group of H / Hkv consecutive heads (`mtl.nn.attention.pool_kv_heads`),
writes the result as step 0 of a new run in --workdir (the source config with model.lm.num_kv_heads = Hkv,
num_steps = N, a fresh optimizer state) and trains it there with `mtl.train.loop.train_and_evaluate`
(re-running resumes). N defaults to 5% of the source's trained steps (the paper's alpha = 0.05); warmup is
min(source warmup, N // 10). --kd_weight W > 0 adds distillation from the source checkpoint (W * KL(source ||
student) per task; a teacher forward per step, not part of the paper's recipe); --pooling svd replaces the mean
by RoPE-aware low-rank fits of each group's K / V projections (mtl/nn/kv_pooling.py).
--num_kv_heads equal to the source's head count skips the pooling: the same
schedule continues the multi-head model, the control for "extra steps alone".
Prints and writes {source, pooled (before training), uptrained} test metrics.
"""
from __future__ import annotations

import json
import os

import jax
from absl import app, flags, logging

from mtl import evaluate as evaluate_lib
from mtl.models.gqa_uptrain import uptrain_config
from mtl.nn.attention import pool_kv_heads
from mtl.nn.kv_pooling import pool_kv_heads_svd
from mtl.train import checkpoint as ckpt_lib
from mtl.train import loop

_SRC = flags.DEFINE_string("src_workdir", None, "Workdir of the trained multi-head run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of the uptrained run (created).")
_KV = flags.DEFINE_integer("num_kv_heads", None, "KV heads of the uptrained model (1 = MQA).")
_STEPS = flags.DEFINE_integer("steps", None, "Uptraining steps (default 5% of the source's).")
_LR = flags.DEFINE_float("learning_rate", None, "Peak learning rate (default: the source's).")
_EVAL_POOLED = flags.DEFINE_bool("eval_pooled", True, "Also evaluate the pooled model before training.")
_EVAL_SOURCE = flags.DEFINE_bool("eval_source", True, "Evaluate the source checkpoint when its results.json is "
                                  "missing or of another step (off: report none).")
_EVAL_BATCHES = flags.DEFINE_integer("eval_batches", 0, "Evaluate source, pooled and uptrained models on the "
                                     "first N test batches only (0: the whole split, as train_and_evaluate).")
_KD = flags.DEFINE_float("kd_weight", 0.0, "Also distil from the source (per task loss + kd_weight * "
                         "KL(source || student), train step 'teacher_distill'); 0 = the paper's recipe.")
_POOLING = flags.DEFINE_enum("pooling", "mean", ["mean", "svd"], "KV-head conversion: 'mean' (the paper's "
                             "mean pooling) or 'svd' (RoPE-aware low-rank fits, remainders folded into q / out: "
                             "mtl/nn/kv_pooling.py).")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.mark_flags_as_required(["src_workdir", "workdir", "num_kv_heads"])


def _evaluate(exp, state) -> dict:
  split = exp.config.dataset.get("test_split", "test")
  return loop.evaluate_split(exp, state, split, max_batches=_EVAL_BATCHES.value or None)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  src_exp, src_state, src_step = loop.restore_experiment(_SRC.value)
  cfg = uptrain_config(src_exp.config, _KV.value, _STEPS.value, _LR.value, src_step, _SRC.value, _KD.value)
  result = {"source_workdir": _SRC.value, "source_step": src_step, "num_kv_heads": _KV.value,
            "num_heads": int(cfg.model.lm.num_heads), "uptrain_steps": cfg.num_steps,
            "uptrain_fraction": cfg.num_steps / src_step, "learning_rate": cfg.optimizer.learning_rate,
            "kd_weight": _KD.value, "pooling": _POOLING.value}
  src_results = os.path.join(_SRC.value, "results.json")
  saved = {}
  if os.path.exists(src_results):
    with open(src_results) as f:
      saved = json.load(f)
  result["eval_batches"] = _EVAL_BATCHES.value or "all"
  if saved.get("step") == src_step and not _EVAL_BATCHES.value:
    result["source_test"] = saved["test"]
  elif _EVAL_SOURCE.value:  # a test subset, or the source stopped early: evaluate the checkpoint
    result["source_test"] = _evaluate(src_exp, src_state)
  if "source_test" in result:
    print(f"source (multi-head, step {src_step}):")
    print(evaluate_lib.format_table(result["source_test"]))
  ckpt = ckpt_lib.Checkpointer(os.path.join(_WORKDIR.value, "checkpoints"), cfg.checkpoint.every_steps,
                               async_save=False)
  if ckpt.latest_step() is None:
    exp = loop.build_experiment(cfg)
    pool = pool_kv_heads_svd if _POOLING.value == "svd" else pool_kv_heads
    params = src_state.params if cfg.model.lm.num_kv_heads is None else pool(
        jax.device_get(src_state.params), _KV.value)
    if jax.tree.structure(params) != jax.tree.structure(exp.state.params):
      raise ValueError("pooled parameters do not match the GQA model's parameter tree")
    params = jax.device_put(params, exp.state_shardings.params)
    state = exp.state.replace(params=params, opt_state=exp.tx.init(params), mtl_state=exp.method.init(params))
    if _EVAL_POOLED.value and cfg.model.lm.num_kv_heads is not None:
      result["pooled_test"] = _evaluate(exp, state)
      print("pooled, before uptraining:")
      print(evaluate_lib.format_table(result["pooled_test"]))
    os.makedirs(_WORKDIR.value, exist_ok=True)
    ckpt.save(0, state, None, cfg.to_json_best_effort(sort_keys=True))
  done = ckpt.latest_step() or 0
  ckpt.close()
  if not _EVAL_BATCHES.value:
    out = loop.train_and_evaluate(cfg, _WORKDIR.value)
    result["uptrained_test"] = out["test"]
    result["steps_per_second"] = out["steps_per_second"]
  else:  # train without the loop's whole-split test, then evaluate the same subset as the source
    if done < cfg.num_steps:
      loop.train_and_evaluate(cfg, _WORKDIR.value, stop_at_step=cfg.num_steps)
    exp, state, _ = loop.restore_experiment(_WORKDIR.value)
    result["uptrained_test"] = _evaluate(exp, state)
  print(f"uptrained ({cfg.num_steps} steps, {100 * result['uptrain_fraction']:.1f}% of the source's):")
  print(evaluate_lib.format_table(result["uptrained_test"]))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
