import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mtl.control import widths as W
from mtl.control.sandwich import sandwich_task_losses
from mtl.models.multitask import build_model
from mtl.tasks.base import TaskSpec

TASKS = (TaskSpec("a", "classification", 3), TaskSpec("b", "classification", 2))


def _setup():
  cfg = ml_collections.ConfigDict(dict(name="multitask", encoder=dict(name="mlp", hidden_dims=(16,)),
                                       head=dict(hidden_dim=8)))
  model = build_model(cfg, TASKS, (6,))
  x = jnp.asarray(np.random.RandomState(0).randn(4, 6), jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  rng = np.random.RandomState(1)
  params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.randn(*s.shape), s.dtype), shapes)["params"]
  return model, x, params


def _losses(outputs):  # squared logits, a stand-in task loss with a known form
  return jnp.stack([jnp.mean(outputs[t.name] ** 2) for t in TASKS])


def test_matches_manual_sum_and_teacher_is_not_distilled():
  model, x, params = _setup()
  configs = W.sandwich_for_step(0, 3, (0.25, 0.5, 1.0), ("a", "b"), num_random=1)

  def loss(p, weight):
    fn = lambda c: model.apply({"params": p}, x, return_features=True, **c.apply_kwargs())
    losses, m = sandwich_task_losses(fn, configs, _losses, cikd_weight=weight)
    return jnp.sum(losses), (losses, m)

  (_, (losses, m)) = jax.jit(loss, static_argnums=1)(params, 0.5)
  outs = jax.jit(lambda p: [model.apply({"params": p}, x, return_features=True, **c.apply_kwargs())
                            for c in configs])(params)
  manual = sum(_losses(o) for o, _ in outs)
  t = np.asarray(outs[0][1])
  cikd = sum(np.mean((np.asarray(f) - t[:, :f.shape[-1]]) ** 2) for _, f in outs[1:])
  np.testing.assert_allclose(m["cikd"], cikd, rtol=1e-5)
  np.testing.assert_allclose(losses, manual + 0.5 * cikd / 2, rtol=1e-5)
  # Gradient of the CIKD term alone (zero task losses) equals that of sum_s mse(student, sg(teacher)).
  two = configs[:2]
  zero = lambda outputs: 0.0 * _losses(outputs)

  def cikd_only(p):
    fn = lambda c: model.apply({"params": p}, x, return_features=True, **c.apply_kwargs())
    return jnp.sum(sandwich_task_losses(fn, two, zero, cikd_weight=2.0)[0])

  def manual_cikd(p):
    fs = [model.apply({"params": p}, x, return_features=True, **c.apply_kwargs())[1] for c in two]
    return 2.0 * jnp.mean((fs[1] - jax.lax.stop_gradient(fs[0])[:, :fs[1].shape[-1]]) ** 2)

  g, g_ref = jax.jit(lambda p: (jax.grad(cikd_only)(p), jax.grad(manual_cikd)(p)))(params)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  assert any(np.any(np.asarray(a) != 0) for a in jax.tree.leaves(g["encoder"]))
