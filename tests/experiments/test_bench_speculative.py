import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_speculative as bench
from mtl.models.lm import DecoderLM, slice_params


def _model():
  model = DecoderLM(vocab_size=272, dim=32, depth=2, num_heads=4, mlp_ratio=2.0, mixer="lightning",
                    block_size=16, tasks=("definition", "reverse", "pycode"))
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  return model, params


def test_matmul_macs_counts_every_kernel_but_the_embedding():
  model, params = _model()
  kernels = [x.size for p, x in jax.tree_util.tree_flatten_with_path(params)[0]
             if str(getattr(p[-1], "key", "")) == "kernel"]
  assert bench.matmul_macs_per_token(params) == sum(kernels)
  assert 32 * 272 in kernels  # the output head is counted
  half = bench.matmul_macs_per_token(slice_params(params, model, 0.5))
  assert 0.2 < half / sum(kernels) < 0.6


def test_speculative_rows_are_identical_to_plain_greedy():
  model, params = _model()
  prompts = bench.code_prompts(batch=2, prompt_len=6)
  assert prompts.shape == (2, 7) and prompts.dtype == np.int32
  result = bench.run(model, params, prompts, widths=[0.5], gammas=[2], max_new_tokens=6, repeats=1)
  plain, spec = result["rows"]
  assert plain["mode"] == "plain" and spec["mode"] == "speculative"
  assert spec["identical_to_plain"]
  assert 0.0 <= spec["acceptance_rate"] <= 1.0 and spec["speedup"] > 0
  assert result["new_tokens"] > 0


def test_step_costs_and_predicted_speedup():
  model, params = _model()
  prompts = bench.code_prompts(batch=1, prompt_len=6)
  costs = bench.step_costs(model, params, 1, prompts.shape[1], widths=[0.5], gammas=[2], iters=2)
  assert costs["target_step"] > 0 and costs["draft_step"][0.5] > 0 and costs["verify"][2] > 0
  result = bench.run(model, params, prompts, widths=[0.5], gammas=[2], max_new_tokens=4, repeats=1, costs=costs)
  row = result["rows"][1]
  want = row["tokens_per_round"] * costs["target_step"] / (2 * costs["draft_step"][0.5] + costs["verify"][2])
  assert row["predicted_speedup"] == want and row["identical_to_plain"]
  assert row["plain_seconds"] > 0 and result["rows"][0]["seconds"] == row["plain_seconds"]


def test_bad_arguments_name_the_flag(tmp_path):
  import pytest
  for flags, match in ((["--widths", "1.0"], "widths"), (["--gammas", "0"], "gammas"), (["--batches", ""], "batches")):
    with pytest.raises(ValueError, match=match):
      bench.main(["--checkpoint_dir", str(tmp_path), "--json", str(tmp_path / "x.json"), *flags])
