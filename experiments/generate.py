"""Answer prompts with a trained multi-task DecoderLM (definitions, reverse dictionary, code).

  python -m experiments.generate --checkpoint_dir WORKDIR/checkpoints --task definition \
      --prompt serendipity --prompt lantern [--temperature 0 --top_k 0 --max_new_tokens 120]
      [--speculative 0.5 --gamma 4]

The model architecture is read from the checkpoint's saved config
(`config.model.lm`: vocab_size, dim, depth, num_heads, mlp_ratio, mixer,
block_size) and the parameters from the newest step ('state' item, key
'params'). `--random_init` skips the checkpoint (architecture from
configs/lm_gcide.py) to smoke-test the command. Prompts are encoded as
[TASK] prompt [SEP] and decoded until EOS.

  python -m experiments.generate --checkpoint_dir WORKDIR/checkpoints --export_params DIR [--export_dtype bfloat16]
writes the parameters alone (no optimizer state; params.npz + lm.json), which --checkpoint_dir DIR (and every
command that loads through `load`) reads back.
"""
from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mtl import decode, speculative
from mtl.data.text import datasets, tokenizer as tk
from mtl.models.lm import DecoderLM

PARAMS_FILE, LM_FILE = "params.npz", "lm.json"


def _model_from_lm(lm: dict, tasks) -> DecoderLM:
  """DecoderLM from a saved `config.model.lm` dict (every field, as `mtl.models.lm.build_lm` passes them)."""
  return DecoderLM(**{k: tuple(v) if isinstance(v, list) else v for k, v in lm.items()}, tasks=tuple(tasks))


def _checkpoint_config(checkpoint_dir: str, step: int | None) -> tuple[int, dict]:
  """(step, saved config) of a Checkpointer directory: `step`, or the newest."""
  from mtl.train.checkpoint import Checkpointer
  ck = Checkpointer(checkpoint_dir, every_steps=1, async_save=False)
  steps = ck.all_steps()
  if not steps:
    raise ValueError(f"no checkpoint in {checkpoint_dir}")
  step = steps[-1] if step is None else step
  return step, ck.read_config(step)


def load(checkpoint_dir: str, step: int | None = None) -> tuple[DecoderLM, dict]:
  """(model, params) from a Checkpointer directory (newest step unless `step`), or from a directory written by
  `export_params` (params.npz + lm.json)."""
  if os.path.exists(os.path.join(checkpoint_dir, PARAMS_FILE)):
    if step is not None:
      raise ValueError(f"{checkpoint_dir} is an exported parameter set (one step); step={step} cannot apply")
    return load_exported(checkpoint_dir)
  return _load_checkpoint(checkpoint_dir, step)[1:]


def _load_checkpoint(checkpoint_dir: str, step: int | None) -> tuple[dict, DecoderLM, dict]:
  """(saved config, model, params) of a Checkpointer directory at `step` (newest if None)."""
  import orbax.checkpoint as ocp
  step, cfg = _checkpoint_config(checkpoint_dir, step)
  lm = cfg.get("model", {}).get("lm")
  if not lm:
    raise ValueError(f"checkpoint config in {checkpoint_dir} has no model.lm section")
  model = _model_from_lm(lm, cfg["dataset"].get("tasks") or datasets.GCIDE_TASKS)
  state = ocp.StandardCheckpointer().restore(
      os.path.join(os.path.abspath(checkpoint_dir), str(step), "state"))
  return {**cfg, "step": step}, model, state["params"]


def export_params(checkpoint_dir: str, out_dir: str, dtype: str = "float32", step: int | None = None) -> str:
  """Writes a checkpoint's LM parameters alone (no optimizer state) as out_dir/params.npz in `dtype`, and the
  model fields as out_dir/lm.json; `load(out_dir)` reads them back (as float32). Returns out_dir.

  For moving a model where the whole checkpoint does not fit (e.g. a 25M-parameter LM in bfloat16 is 50 MB,
  its checkpoint with Adam's moments 264 MB)."""
  import json
  cfg, model, params = _load_checkpoint(checkpoint_dir, step)
  step = cfg["step"]
  flat = {k: np.asarray(jnp.asarray(leaf, jnp.dtype(dtype)))
          for k, leaf in traverse_util.flatten_dict(params, sep="/").items()}
  os.makedirs(out_dir, exist_ok=True)
  np.savez(os.path.join(out_dir, PARAMS_FILE), **{k: v.view(np.uint16) if v.dtype == jnp.bfloat16 else v
                                                   for k, v in flat.items()})
  with open(os.path.join(out_dir, LM_FILE), "w") as f:
    json.dump({"lm": dict(cfg["model"]["lm"]), "tasks": list(model.tasks), "step": step, "dtype": dtype,
               "source": os.path.abspath(checkpoint_dir)}, f, indent=1)
  return out_dir


def load_exported(path: str) -> tuple[DecoderLM, dict]:
  """(model, float32 params) from an `export_params` directory."""
  import json
  with open(os.path.join(path, LM_FILE)) as f:
    meta = json.load(f)
  bf16 = meta.get("dtype") == "bfloat16"
  with np.load(os.path.join(path, PARAMS_FILE)) as z:
    flat = {key: jnp.asarray(z[key].view(jnp.bfloat16) if bf16 else z[key], jnp.float32) for key in z.files}
  return _model_from_lm(meta["lm"], meta["tasks"]), traverse_util.unflatten_dict(flat, sep="/")


def encode_prompts(prompts: list[str], task: str) -> tuple[np.ndarray, np.ndarray]:
  """[TASK] prompt [SEP] rows (padded with PAD) and their lengths."""
  if task not in datasets.GCIDE_TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {datasets.GCIDE_TASKS}")
  tok = datasets.TOKENIZER
  t = tok.task_token(datasets.GCIDE_TASKS.index(task))
  rows = [[t] + tok.encode(p) + ([] if task == "pycode" else [tk.SEP]) for p in prompts]
  n = max(len(r) for r in rows)
  arr = np.full((len(rows), n), tk.PAD, np.int32)
  for i, r in enumerate(rows):
    arr[i, :len(r)] = r
  return arr, np.array([len(r) for r in rows])


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--checkpoint_dir")
  ap.add_argument("--random_init", action="store_true")
  ap.add_argument("--task", default="definition")
  ap.add_argument("--prompt", action="append")
  ap.add_argument("--export_params", default="", help="write the checkpoint's parameters alone to this directory "
                  "(params.npz + lm.json, readable by --checkpoint_dir) and exit")
  ap.add_argument("--export_dtype", default="float32", help="float32 or bfloat16 (half the bytes)")
  ap.add_argument("--max_new_tokens", type=int, default=120)
  ap.add_argument("--temperature", type=float, default=0.0)
  ap.add_argument("--top_k", type=int, default=0)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--speculative", type=float, default=0.0, help="draft width (0: off)")
  ap.add_argument("--gamma", type=int, default=4)
  a = ap.parse_args(argv)
  if a.export_params:
    if not a.checkpoint_dir:
      raise ValueError("--export_params needs --checkpoint_dir")
    if a.export_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"--export_dtype must be float32 or bfloat16, got {a.export_dtype!r}")
    print(export_params(a.checkpoint_dir, a.export_params, a.export_dtype))
    return
  if not a.prompt:
    raise ValueError("pass at least one --prompt")
  if a.random_init:
    from configs import lm_gcide
    model = _model_from_lm(dict(lm_gcide.get_config().model.lm), datasets.GCIDE_TASKS)
    params = model.init(jax.random.PRNGKey(a.seed), jnp.zeros((1, 8), jnp.int32))["params"]
  elif a.checkpoint_dir:
    model, params = load(a.checkpoint_dir)
  else:
    raise ValueError("pass --checkpoint_dir or --random_init")
  prompts, lengths = encode_prompts(a.prompt, a.task)
  rng = jax.random.PRNGKey(a.seed)
  if a.speculative:
    if len(set(lengths.tolist())) != 1:
      out = [speculative.speculative_generate(
          model, params, prompts[i:i + 1, :lengths[i]], max_new_tokens=a.max_new_tokens,
          draft_width=a.speculative, gamma=a.gamma, rng=rng, temperature=a.temperature,
          top_k=a.top_k, stop_tokens=(tk.EOS,), pad_token=tk.PAD) for i in range(len(a.prompt))]
      texts = [o["tokens"][0, lengths[i]:] for i, o in enumerate(out)]
      print("speculative stats:", [o["stats"] for o in out])
    else:
      o = speculative.speculative_generate(
          model, params, prompts, max_new_tokens=a.max_new_tokens, draft_width=a.speculative,
          gamma=a.gamma, rng=rng, temperature=a.temperature, top_k=a.top_k,
          stop_tokens=(tk.EOS,), pad_token=tk.PAD)
      texts = [o["tokens"][i, lengths[i]:] for i in range(len(a.prompt))]
      print("speculative stats:", o["stats"])
  else:
    o = decode.generate(model, params, prompts, lengths, max_new_tokens=a.max_new_tokens,
                        rng=rng, temperature=a.temperature, top_k=a.top_k,
                        stop_tokens=(tk.EOS,), pad_token=tk.PAD)
    texts = [o["tokens"][i, lengths[i]:] for i in range(len(a.prompt))]
  for p, t in zip(a.prompt, texts):
    print(f"{p} -> {datasets.TOKENIZER.decode(t)}")


if __name__ == "__main__":
  main()
