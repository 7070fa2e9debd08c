"""TaskExpert layer vs a numpy reference; model outputs, metrics, single-task inference; config factory."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.models.taskexpert import TaskExpertModel, TaskHead, _TaskExpertLayer, build_taskexpert
from mtl.tasks.base import TaskSpec
from mtl.testing.random_params import randn, random_params

TASKS = (TaskSpec("left", "classification", 10), TaskSpec("seg", "semseg", 3))


def _cfg(**kw):
  base = dict(name="taskexpert", dim=8, depth=2, num_heads=2, mlp_ratio=1.0, moe_every=2, num_experts=4,
              top_k=2, te_experts=3, te_hidden=4, encoder={}, head={})
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _np_layernorm(x, scale, bias, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def test_taskexpert_layer_matches_numpy_reference():
  names = ("a", "b")
  layer = _TaskExpertLayer(num_experts=3, hidden_dim=5, task_names=names)
  k1, k2, k3 = 1, 2, 3
  f = randn(k1, (2, 4, 6))
  mem = {0: randn(k2, (2, 4, 6)), 1: randn(k3, (2, 4, 6))}
  variables = {"params": random_params(layer, {0: f, 1: f}, mem)}
  new_mem, gates = jax.jit(layer.apply)(variables, {0: f, 1: f}, mem)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  x = _np_layernorm(np.asarray(f, np.float64), p["norm"]["scale"], p["norm"]["bias"])
  h = np.asarray(jax.nn.gelu(jnp.asarray(np.einsum("bnd,edh->bneh", x, p["expert_w1"]) + p["expert_b1"])))
  experts = np.einsum("bneh,ehd->bned", h, p["expert_w2"]) + p["expert_b2"]
  for t, name in enumerate(names):
    logits = x @ p[f"gate_{name}"]["kernel"] + p[f"gate_{name}"]["bias"]
    g = np.exp(logits - logits.max(-1, keepdims=True))
    g /= g.sum(-1, keepdims=True)
    m = np.asarray(mem[t], np.float64)
    assembled = (g[..., :3, None] * experts).sum(2) + g[..., 3:] * m  # the memory is the 4th expert
    ln = p[f"memory_norm_{name}"]
    np.testing.assert_allclose(new_mem[t], _np_layernorm(m + assembled, ln["scale"], ln["bias"]),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gates[t], g.mean((0, 1)), rtol=1e-5)


def test_model_outputs_metrics_and_single_task_inference():
  """TaskExpert on an MoE backbone with a router per task: gates, per-task loads, single-task == full."""
  model = build_taskexpert(_cfg(variant="taskexpert", router="task", depth=1, moe_every=1), TASKS, (8, 8, 1))
  x = randn(2, (2, 8, 8, 1))
  params = random_params(model, x)
  def full_and_single(p, x):
    out, state = model.apply({"params": p}, x, train=True, mutable=["aux_loss", "metrics"])
    return out, state, model.apply({"params": p}, x, train=True, tasks=("seg",))

  out, state, single = jax.jit(full_and_single)(params, x)
  assert out["left"].shape == (2, 10) and out["seg"].shape == (2, 8, 8, 3)
  aux = jax.tree_util.tree_leaves(state["aux_loss"])
  assert aux and all(np.isfinite(a) and a > 0 for a in aux)
  metrics = state["metrics"]
  gates = [float(metrics[f"taskexpert/left/gate_{e}"][0]) for e in range(3)]
  np.testing.assert_allclose(sum(gates) + float(metrics["taskexpert/left/gate_memory"][0]), 1.0, rtol=1e-5)
  moe = metrics["block0"]["moe"]  # per-task routers: one MoE pass per task, loads recorded per task
  for t in (0, 1):
    np.testing.assert_allclose(sum(float(moe[f"moe/task{t}/expert_load_{e}"][0]) for e in range(4)), 1.0,
                               rtol=1e-5)
  assert list(single) == ["seg"]
  np.testing.assert_allclose(single["seg"], out["seg"], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="unknown or empty tasks"):
    model.apply({"params": params}, x, tasks=("depth",))


def test_build_and_bad_config():
  # The plain MoE-encoder variant on tabular inputs (shapes only: nothing compiles).
  model = build_taskexpert(_cfg(variant="moe"), (TaskSpec("y", "binary", 1), TaskSpec("z", "binary", 1)), (5,))
  x = jnp.ones((3, 5))
  out = jax.eval_shape(lambda r, x: model.apply(model.init(r, x), x), jax.random.PRNGKey(0), x)
  assert out["y"].shape == (3, 1) and out["z"].shape == (3, 1)
  with pytest.raises(ValueError, match="unknown taskexpert model config keys"):
    build_taskexpert(_cfg(depht=3), TASKS, (8, 8, 1))
  with pytest.raises(ValueError, match="needs image inputs"):
    build_taskexpert(_cfg(), TASKS, (5,))
  with pytest.raises(ValueError, match="unknown variant"):
    jax.eval_shape(build_taskexpert(_cfg(variant="mmoe"), TASKS, (8, 8, 1)).init, jax.random.PRNGKey(0),
                   jnp.ones((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="heads"):
    jax.eval_shape(TaskExpertModel(task_names=("a",), heads={"b": TaskHead(2)}).init, jax.random.PRNGKey(0), x)
