"""Tower models (shared bottom, MMoE, CGC, PLE, AdaTT, HoME): shapes, losses and gradients of every arch; numpy
float64 references for MMoE and AdaTT; the gate structure each paper defines (CGC's and HoME's masks as exact
zero gradients); named feature specs and their errors; the config factory; training through the real loop."""
import flax.linen as nn
import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.models.multitask import build_model
from mtl.models.tabular import TabularInput, parse_features
from mtl.models.towers import ARCHS, build_towers
from mtl.tasks.base import TaskSpec
from mtl.testing.random_params import randn
from mtl.testing.random_params import random_params as _boxed_random_params
from mtl.train.step import task_losses_and_stats

def random_params(*args, **kwargs):  # plain arrays (expert weights are boxed with logical axis names)
  return nn.meta.unbox(_boxed_random_params(*args, **kwargs))


TASKS = (TaskSpec("r", "regression", 1, metric="mse", higher_is_better=False), TaskSpec("b", "binary", 1),
         TaskSpec("c", "classification", 3))
FEATURES = ("num:dense:5", "cat:categorical:7:3")
ARCH_CFG = {
    "shared_bottom": dict(bottom_hidden=(6, 5)),
    "mmoe": dict(expert_hidden=(4,), num_shared_experts=3),
    "cgc": dict(expert_hidden=(4,), num_shared_experts=2, num_task_experts=2),
    "ple": dict(expert_hidden=(4, 3), num_shared_experts=2, num_task_experts=1, num_levels=3),
    "adatt": dict(expert_hidden=(4,), num_shared_experts=1, num_task_experts=2, num_levels=2),
    "home": dict(expert_hidden=(4,), num_shared_experts=2, num_group_experts=1, num_task_experts=2,
                 task_groups=(0, 0, 1), feature_gate_rank=2, self_gate=True),
}
assert set(ARCH_CFG) == set(ARCHS)


def _model(arch, tasks=TASKS, **kw):
  # gelu: with ReLU, a tiny random-init network can have all units of a branch dead (exactly zero gradient).
  cfg = dict(name="towers", arch=arch, features=FEATURES, tower_hidden=(3,), activation="gelu", **ARCH_CFG[arch])
  cfg.update(kw)
  return build_model(ml_collections.ConfigDict(cfg), tasks, (6,))


def _inputs(n=6, seed=0, big=1e3):
  ids = np.array([0, 3, 6, -1, 7, 2.5] * n)[:n, None]  # -1 and 7 are out of vocabulary, 2.5 truncates to 2
  return jnp.concatenate([randn(seed, (n, 5)) * jnp.asarray([1e-3, 1.0, big, 1.0, 0.0]), jnp.asarray(ids,
                                                                                                  jnp.float32)], 1)


def _batch(x, seed=1):
  rng = np.random.default_rng(seed)
  n = x.shape[0]
  return {"r": jnp.asarray(rng.normal(size=n) * 100, jnp.float32), "b": jnp.asarray(rng.integers(0, 2, n)),
          "c": jnp.asarray(rng.integers(0, 3, n))}


def _variables(model, x):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  v = {"params": random_params(model, x)}
  if "batch_stats" in shapes:
    v["batch_stats"] = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), nn.meta.unbox(shapes["batch_stats"]))
  return v


@pytest.mark.parametrize("arch", ARCHS)
def test_shapes_losses_and_every_parameter_gets_gradient(arch):
  """Outputs [B, num_outputs] per task; finite losses and gradients on badly scaled inputs (columns 1e-3 .. 1e3,
  a constant column, out-of-vocabulary ids); on inputs scaled 1e-3 .. 10 (where the 1e3 column no longer
  saturates the softmax gates) a non-zero gradient reaches every parameter (no dead gate or expert)."""
  model = _model(arch)
  x = _inputs()
  v = _variables(model, x)
  batch = _batch(x)

  def loss_fn(params, x):
    out, state = model.apply({**v, "params": params}, x, train=True, mutable=["metrics", "batch_stats"])
    losses, _ = task_losses_and_stats(out, batch, TASKS)
    return jnp.sum(losses), (out, state)

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  (loss, (out, state)), grads = grad_fn(v["params"], x)
  assert {k: o.shape for k, o in out.items()} == {"r": (6, 1), "b": (6, 1), "c": (6, 3)}
  assert np.isfinite(float(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
  _, grads = grad_fn(v["params"], _inputs(big=10.0))
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  dead = [jax.tree_util.keystr(p) for p, g in flat if not np.any(np.asarray(g))]
  # The OOV row and rows 0, 2, 3, 6 of the embedding are used; other rows get no gradient by design.
  dead = [d for d in dead if "embed_cat" not in d]
  assert not dead, dead
  if arch != "shared_bottom":
    m = state["metrics"]
    for t in ("r", "b", "c"):
      entropy = float(m[f"towers/{t}/gate_entropy"][0])
      assert 0.0 <= entropy <= np.log(20)
      if arch != "mmoe":
        assert 0.0 <= float(m[f"towers/{t}/own_weight"][0]) <= 1.0
  assert ("batch_stats" in state) == (arch == "home")


def _softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _f64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def test_mmoe_matches_numpy_reference():
  tasks = TASKS[:2]
  model = _model("mmoe", tasks, features=("x:dense:6",), activation="relu")
  x = randn(3, (5, 6)) * 10.0
  params = random_params(model, x)
  out = jax.jit(model.apply)({"params": params}, x)
  p, xd = _f64(params), np.asarray(x, np.float64)
  ex = p["shared_experts0"]
  experts = np.maximum(np.einsum("bd,edh->beh", xd, ex["w0"]) + ex["b0"], 0.0)  # [B, E, H]
  for t in tasks:
    g = _softmax(xd @ p[f"gate0_{t.name}"]["kernel"] + p[f"gate0_{t.name}"]["bias"])
    z = np.einsum("be,beh->bh", g, experts)
    tw = p[f"tower_{t.name}"]
    y = np.maximum(z @ tw["dense0"]["kernel"] + tw["dense0"]["bias"], 0) @ tw["dense1"]["kernel"] + tw["dense1"]["bias"]
    np.testing.assert_allclose(out[t.name], y, rtol=1e-4, atol=1e-4)


def test_adatt_fusion_unit_matches_numpy_reference():
  """One fusion level: task t gets softmax-gated all experts plus v_t . its own experts (the residual)."""
  tasks = TASKS[:2]
  model = _model("adatt", tasks, features=("x:dense:6",), num_levels=1, num_shared_experts=1, activation="relu")
  x = randn(4, (5, 6))
  params = random_params(model, x)
  out = jax.jit(model.apply)({"params": params}, x)
  p, xd = _f64(params), np.asarray(x, np.float64)
  te, se = p["task_experts0"], p["shared_experts0"]
  own = np.maximum(np.einsum("bd,edh->beh", xd, te["w0"]) + te["b0"], 0).reshape(5, 2, 2, -1)
  shared = np.maximum(np.einsum("bd,edh->beh", xd, se["w0"]) + se["b0"], 0)
  everything = np.concatenate([own.reshape(5, 4, -1), shared], 1)
  for i, t in enumerate(tasks):
    g = _softmax(xd @ p[f"gate0_{t.name}"]["kernel"] + p[f"gate0_{t.name}"]["bias"])
    z = np.einsum("be,beh->bh", g, everything) + np.einsum("k,bkh->bh", p[f"native0_{t.name}"], own[:, i])
    tw = p[f"tower_{t.name}"]
    y = np.maximum(z @ tw["dense0"]["kernel"] + tw["dense0"]["bias"], 0) @ tw["dense1"]["kernel"] + tw["dense1"]["bias"]
    np.testing.assert_allclose(out[t.name], y, rtol=1e-4, atol=1e-4)


def test_adatt_native_weights_start_small_and_signed():
  """v_t starts uniform in [-1/sqrt(K), 1/sqrt(K)] (the authors' init), not at 1 (a sum of K experts)."""
  model = _model("adatt", TASKS[:2], features=("x:dense:6",), num_levels=2, num_shared_experts=0,
                 num_task_experts=4, activation="relu")
  params = model.init(jax.random.key(0), randn(1, (3, 6)))["params"]
  v = np.concatenate([np.asarray(params[f"native{lvl}_{t.name}"]) for lvl in range(2) for t in TASKS[:2]])
  assert v.shape == (16,) and np.all(np.abs(v) <= 0.5) and v.min() < 0 < v.max()
  assert len(set(np.round(v, 6))) == 16          # independent draws per unit and level


def _grad_of_task(model, v, x, task):
  def f(params):
    out, _ = model.apply({**v, "params": params}, x, train=True, mutable=["metrics", "batch_stats"])
    return jnp.sum(out[task])
  return jax.grad(f)(v["params"])


def test_cgc_task_sees_only_its_own_and_shared_experts():
  """CGC: the 'r' output does not depend on the experts of 'b' or 'c' (exactly zero gradient), but on its own
  and the shared ones. In PLE (2 levels) the level-1 shared gate mixes everything, so it does depend on them."""
  x = _inputs(big=10.0)
  for arch, levels in (("cgc", None), ("ple", 2)):
    model = _model(arch, **({} if levels is None else {"num_levels": levels}))
    v = _variables(model, x)
    w = _grad_of_task(model, v, x, "r")["task_experts0"]["w0"]
    g = w.reshape((3, w.shape[0] // 3) + w.shape[1:])
    norms = np.abs(np.asarray(g)).sum(axis=(1, 2, 3))
    assert norms[0] > 0
    if arch == "cgc":
      assert norms[1] == 0 and norms[2] == 0
    else:
      assert norms[1] > 0 and norms[2] > 0


def test_home_hierarchy_masks_and_feature_gates():
  """HoME with groups (0, 0, 1): task 'c' (group 1) gets exactly zero gradient from the level-2 experts of
  group 0 and of tasks 'r', 'b'; the zero-initialised feature gates start at 1 (the input passes unchanged)."""
  model = _model("home")
  x = _inputs(big=10.0)
  v = _variables(model, x)
  g = _grad_of_task(model, v, x, "c")
  group2 = np.abs(np.asarray(g["group_experts2"]["w0"])).sum(axis=(1, 2))  # [groups * m]
  task2 = np.abs(np.asarray(g["task_experts2"]["w0"])).reshape(3, 2, -1).sum(-1).sum(-1)
  assert group2[0] == 0 and group2[1] > 0
  assert task2[0] == 0 and task2[1] == 0 and task2[2] > 0
  init = nn.meta.unbox(model.init(jax.random.PRNGKey(0), x))
  no_gates = _model("home", feature_gate_rank=0)
  pn = {k: a for k, a in init["params"].items() if not k.startswith("feature_gate")}
  a = model.apply(init, x)
  b = no_gates.apply({**init, "params": pn}, x)
  for t in a:
    np.testing.assert_allclose(a[t], b[t], rtol=1e-6, atol=1e-6)


def test_tabular_input_embeds_and_maps_out_of_vocabulary_ids():
  feats = parse_features(("a:dense:2", "c:categorical:3:4"), (3,))
  layer = TabularInput(feats)
  x = jnp.asarray([[1.0, 2.0, 0.0], [3.0, 4.0, 2.0], [5.0, 6.0, 3.0], [7.0, 8.0, -1.0]])
  params = random_params(layer, x)
  y = np.asarray(layer.apply({"params": params}, x))
  table = np.asarray(params["embed_c"]["embedding"])
  assert table.shape == (4, 4)  # 3 ids + 1 out-of-vocabulary row
  np.testing.assert_array_equal(y[:, :2], np.asarray(x[:, :2]))
  np.testing.assert_array_equal(y[:, 2:], table[[0, 2, 3, 3]])


@pytest.mark.parametrize("specs,shape,match", [
    (("x:dense:5",), (6,), r"cover 5 columns but the input has 6.*'x': columns 0-4"),
    (("x:dense:5", "u:categorical:9:2"), (5,), r"feature 'u' runs past the end"),
    (("x:dense:5", "x:dense:1"), (6,), r"feature 'x' is named twice"),
    (("x:sparse:5",), (5,), r"feature 'x'.*needs a kind"),
    (("x:dense:0",), (0,), r"feature 'x': sizes must be >= 1"),
    (("u:categorical:9",), (1,), r"feature 'u': spec .* must be name:categorical:V:E"),
    (("u:categorical:9:two",), (1,), r"feature 'u'.*non-integer"),
    ((), (5,), r"no input features"),
    (("x:dense:5",), (5, 2), r"tabular features need inputs \[B, F\]"),
])
def test_bad_feature_specs_are_named(specs, shape, match):
  with pytest.raises(ValueError, match=match):
    parse_features(specs, shape)


def test_build_errors():
  with pytest.raises(ValueError, match=r"arch 'mmoe' does not read config keys \['num_levels'\]"):
    _model("mmoe", num_levels=2)
  with pytest.raises(ValueError, match="unknown towers arch 'mmmoe'"):
    build_towers(dict(arch="mmmoe", features=FEATURES), TASKS, (6,))
  with pytest.raises(ValueError, match="task 'seg'.*not 'semseg'"):
    _model("mmoe", tasks=(TaskSpec("seg", "semseg", 3),))
  with pytest.raises(ValueError, match="cover 6 columns but the input has 7"):
    build_towers(dict(arch="mmoe", features=FEATURES), TASKS, (7,))
  model = _model("home", task_groups=(0, 1))
  with pytest.raises(ValueError, match="task_groups needs one group id"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), _inputs())
  model = _model("cgc", num_task_experts=0)
  with pytest.raises(ValueError, match="needs num_task_experts >= 1"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), _inputs())


def test_home_trains_through_the_loop_on_the_synthetic_benchmark(tmp_path, monkeypatch):
  """configs/towers_synthetic.py through mtl.train.loop (what experiments.train runs): the dataset builds,
  batch statistics are updated, the test metrics are finite and below the variance of the labels."""
  import importlib

  from mtl.train import loop
  monkeypatch.setenv("MTL_DATA_DIR", str(tmp_path / "data"))
  c = importlib.import_module("configs.towers_synthetic").get_config("arch=home,correlation=0.5,steps=30")
  c.log_every = 10
  c.checkpoint.every_steps = 30
  result = loop.train_and_evaluate(c, str(tmp_path / "w"), progress=False)
  assert result["step"] == 30
  for t in ("y1", "y2"):
    assert np.isfinite(result["test"][t]["mse"]) and 0 < result["test"][t]["mse"] < 10.0
