"""Loss-weighting methods against hand-computed weights / the gradients of their defining objectives."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl.optim import get_method


def _run(method, losses_seq):
  state = method.init(None)
  out = []
  for step, losses in enumerate(losses_seq):
    w, state, metrics = method.weights_from_losses(jnp.asarray(losses, jnp.float32), state, step)
    assert set(metrics) >= {f"weight/{i}" for i in range(method.num_tasks)}
    out.append(np.asarray(w))
  return out, state


def test_equal():
  (w,), _ = _run(get_method("equal", 3), [[1.0, 2.0, 3.0]])
  np.testing.assert_array_equal(w, [1, 1, 1])


def test_uncertainty_matches_kendall_objective():
  m = get_method("uncertainty", 2, forms=("regression", "classification"), lr=0.1)
  losses = jnp.array([2.0, 0.5])
  state = m.init(None)
  state["log_vars"] = jnp.array([0.3, -0.2])
  def objective(l, s):  # 1/(2 sigma^2) L + log sigma ; 1/sigma^2 L + log sigma ; s = log sigma^2
    return 0.5 * jnp.exp(-s[0]) * l[0] + 0.5 * s[0] + jnp.exp(-s[1]) * l[1] + 0.5 * s[1]
  w, new_state, _ = m.weights_from_losses(losses, state, 0)
  np.testing.assert_allclose(w, jax.grad(objective)(losses, state["log_vars"]), rtol=1e-6)
  # first Adam step moves each s by -lr * sign(dObjective/ds)
  ds = jax.grad(objective, argnums=1)(losses, state["log_vars"])
  np.testing.assert_allclose(new_state["log_vars"], state["log_vars"] - 0.1 * jnp.sign(ds), rtol=1e-5)


def test_dwa_by_hand():
  m = get_method("dwa", 2, temperature=2.0, smoothing=0.0)
  ws, _ = _run(m, [[1.0, 1.0], [0.5, 0.9], [0.4, 0.8], [0.3, 0.7]])
  np.testing.assert_allclose(ws[0], [1, 1])
  np.testing.assert_allclose(ws[1], [1, 1])
  r = np.array([0.5 / 1.0, 0.9 / 1.0])
  np.testing.assert_allclose(ws[2], 2 * np.exp(r / 2) / np.exp(r / 2).sum(), rtol=1e-6)
  r = np.array([0.4 / 0.5, 0.8 / 0.9])
  np.testing.assert_allclose(ws[3], 2 * np.exp(r / 2) / np.exp(r / 2).sum(), rtol=1e-6)


def test_gls_is_gradient_of_geometric_mean():
  losses = jnp.array([0.5, 2.0, 3.0])
  (w,), _ = _run(get_method("gls", 3), [losses])
  np.testing.assert_allclose(w, jax.grad(lambda l: jnp.prod(l) ** (1 / 3))(losses), rtol=1e-5)


def test_rlw_random_but_reproducible():
  m = get_method("rlw", 4, seed=3)
  a, _ = _run(m, [[1.0] * 4] * 3)
  b, _ = _run(m, [[1.0] * 4] * 3)
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.allclose(a[0], a[1])
  np.testing.assert_allclose(np.stack(a).sum(1), 4.0, rtol=1e-5)
  assert np.all(np.stack(a) > 0)


def test_famo_matches_reference_loop():
  lr, wd = 0.1, 1e-3
  seq = [[1.0, 2.0], [0.8, 1.9], [0.5, 1.85]]
  ws, state = _run(get_method("famo", 2, lr=lr, weight_decay=wd), seq)
  # reference: FAMO's official update with torch-style Adam (L2 decay), written out in numpy
  xi, mom, vel = np.zeros(2), np.zeros(2), np.zeros(2)
  t = 0
  for step, l in enumerate(seq):
    l = np.asarray(l)
    if step > 0:
      delta = np.log(np.asarray(seq[step - 1]) + 1e-8) - np.log(l + 1e-8)
      z = np.exp(xi) / np.exp(xi).sum()
      g = z * (delta - z @ delta) + wd * xi
      t += 1
      mom = 0.9 * mom + 0.1 * g
      vel = 0.999 * vel + 0.001 * g * g
      xi = xi - lr * (mom / (1 - 0.9 ** t)) / (np.sqrt(vel / (1 - 0.999 ** t)) + 1e-8)
    z = np.exp(xi) / np.exp(xi).sum()
    d = l + 1e-8
    np.testing.assert_allclose(ws[step], (z / d) / (z / d).sum(), rtol=1e-5)
  np.testing.assert_allclose(state["logits"], xi, rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", [("uncertainty", {"forms": "nope"}), ("dwa", {"temperature": 0.0}),
                                         ("famo", {"lr": -1.0})])
def test_bad_options(name, kwargs):
  with pytest.raises(ValueError):
    get_method(name, 2, **kwargs)


def test_static_weights_are_the_configured_ones_and_checked():
  from mtl.optim import get_method
  m = get_method("static", 3, weights=(1.0, 10.0, 50.0))
  w, _, _ = m.fn(jnp.array([0.3, 2.0, 0.01]), None, 0)
  np.testing.assert_array_equal(np.asarray(w), [1.0, 10.0, 50.0])
  with pytest.raises(ValueError, match="3 positive values"):
    get_method("static", 3, weights=(1.0, 2.0))
  with pytest.raises(ValueError, match="3 positive values"):
    get_method("static", 3, weights=(1.0, 0.0, 2.0))
