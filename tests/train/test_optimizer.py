"""The optimizer config cannot lie: every field the chosen optimizer ignores is an error; AdamW's decoupled decay,
Adam's b1/b2/eps and Nesterov momentum match float64 references."""
import glob
import importlib
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mtl.train.optimizer import build_optimizer, check_optimizer_config


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(name="adamw", learning_rate=0.1, schedule="constant"), **kw))


@pytest.mark.parametrize("kw,match", [
    (dict(name="adam", weight_decay=1e-4), r"weight_decay.*adamw"),
    (dict(name="sgd", weight_decay=0.0), r"weight_decay"),             # even 0: the field is not read
    (dict(name="adam", momentum=0.9), r"momentum.*\['momentum'\]"),
    (dict(name="momentum", b1=0.9), r"b1"),
    (dict(schedule="constant", final_lr_fraction=0.1), r"final_lr_fraction.*cosine"),
    (dict(beta1=0.9), r"beta1"),                                       # misspelt field
    (dict(name="lion"), r"optimizer.name"),
    (dict(schedule="linear"), r"schedule"),
    (dict(weight_decay=-1.0), r"weight_decay must be >= 0"),
    (dict(name="momentum", momentum=1.0), r"momentum must be in"),
    (dict(schedule="cosine", final_lr_fraction=2.0), r"final_lr_fraction must be in"),
])
def test_ignored_or_bad_fields_are_named(kw, match):
  with pytest.raises(ValueError, match=match):
    build_optimizer(_cfg(**kw), 10)


def _run(tx, p0, grads):
  p, state = {"w": jnp.asarray(p0, jnp.float32)}, None
  state = tx.init(p)
  for g in grads:
    upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, p)
    p = jax.tree_util.tree_map(lambda a, u: a + u, p, upd)
  return np.asarray(p["w"], np.float64)


def test_adamw_decays_decoupled_and_adam_betas_are_used():
  rng = np.random.default_rng(0)
  p0 = np.array([1e3, -2.0, 1e-6, 0.0])                     # badly scaled weights, one zero
  grads = [rng.normal(size=4) * np.array([1e-8, 1.0, 1e3, 0.0]) for _ in range(4)]
  lr, wd, b1, b2, eps = 0.01, 0.3, 0.8, 0.95, 1e-6
  # float64 reference: Adam moments, then p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p).
  p, m, v = p0.copy(), np.zeros(4), np.zeros(4)
  for t, g in enumerate(grads, 1):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    mh, vh = m / (1 - b1 ** t), v / (1 - b2 ** t)
    p = p - lr * (mh / (np.sqrt(vh) + eps) + wd * p)
  got = _run(build_optimizer(_cfg(learning_rate=lr, weight_decay=wd, b1=b1, b2=b2, eps=eps), 10), p0, grads)
  np.testing.assert_allclose(got, p, rtol=2e-5, atol=1e-9)
  # With zero gradients only the decay acts: p_t = p0 (1 - lr wd)^t; Adam leaves p unchanged.
  zeros = [np.zeros(4)] * 3
  np.testing.assert_allclose(_run(build_optimizer(_cfg(learning_rate=lr, weight_decay=wd), 10), p0, zeros),
                             p0 * (1 - lr * wd) ** 3, rtol=1e-6)
  np.testing.assert_array_equal(_run(build_optimizer(_cfg(name="adam", learning_rate=lr), 10), p0, zeros),
                                p0.astype(np.float32))


def test_nesterov_momentum_matches_reference():
  grads = [np.array([1.0, -3.0]), np.array([0.5, 2.0]), np.array([-1.0, 0.0])]
  lr, mu = 0.1, 0.7
  p, buf = np.array([0.3, 0.4]), np.zeros(2)
  for g in grads:   # optax.sgd(nesterov=True): buf = g + mu buf; p -= lr (g + mu buf)
    buf = g + mu * buf
    p = p - lr * (g + mu * buf)
  got = _run(build_optimizer(_cfg(name="momentum", learning_rate=lr, momentum=mu), 10), [0.3, 0.4], grads)
  np.testing.assert_allclose(got, p, rtol=1e-6)


def test_every_shipped_config_describes_its_optimizer_truthfully():
  root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(root, "*.py"))
                 if not os.path.basename(p).startswith(("__", "common")))
  assert names
  for name in names:
    c = importlib.import_module(f"configs.{name}").get_config(None)
    check_optimizer_config(c.optimizer)
    if c.optimizer.get("weight_decay", 0.0):
      assert c.optimizer.name == "adamw", name
