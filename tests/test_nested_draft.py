import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mtl.models.lm import DecoderLM
from mtl.optim import get_method
from mtl.tasks.base import TaskSpec
from mtl.train import loop
from mtl.nested_draft import check_draft_config, distill_kl, make_nested_draft_step

TASKS = (TaskSpec("a", "lm", 11, metric="perplexity", higher_is_better=False),
         TaskSpec("b", "lm", 11, metric="perplexity", higher_is_better=False))


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_distill_kl_matches_numpy_and_ignores_padding():
  rng = np.random.RandomState(0)
  t, s = rng.randn(2, 3, 5).astype(np.float32), rng.randn(2, 3, 5).astype(np.float32)
  targets = np.array([[1, 2, -1], [0, -1, -1]])
  lt, ls = _log_softmax(t), _log_softmax(s)
  kl = (np.exp(lt) * (lt - ls)).sum(-1)
  want = kl[targets >= 0].mean()
  np.testing.assert_allclose(distill_kl(t, s, targets), want, rtol=1e-5)
  np.testing.assert_allclose(distill_kl(t, t, targets), 0.0, atol=1e-6)
  assert float(distill_kl(t, s, -np.ones_like(targets))) == 0.0
  # The teacher gets no gradient.
  g = jax.grad(lambda a: distill_kl(a, s, targets))(jnp.asarray(t))
  assert not np.any(np.asarray(g))
  with pytest.raises(ValueError, match="teacher logits"):
    distill_kl(t, s[..., :4], targets)


@pytest.mark.parametrize("draft, match", [
    (dict(widths=()), "empty"), (dict(widths=(1.0,)), r"\(0, 1\)"), (dict(widths=(0.0,)), r"\(0, 1\)"),
    (dict(widths=(0.5,), kd_weight=-1.0), "kd_weight")])
def test_bad_draft_config(draft, match):
  with pytest.raises(ValueError, match=match):
    check_draft_config(ml_collections.ConfigDict(draft))


def test_step_gradient_equals_plain_sum_of_losses():
  model = DecoderLM(vocab_size=11, dim=16, depth=2, num_heads=4, mlp_ratio=2.0, mixer="softmax",
                    tasks=("a", "b"))
  rng = np.random.RandomState(0)
  tokens = jnp.asarray(rng.randint(0, 11, (3, 7)), jnp.int32)
  batch = {"tokens": tokens, "a": jnp.asarray(rng.randint(-1, 11, (3, 7))),
           "b": jnp.asarray(rng.randint(-1, 11, (3, 7)))}
  tx = optax.sgd(0.1)
  method = get_method("equal", 2)
  state = loop.init_state(model, tx, method, (7,), seed=0)
  widths, kd = (0.5, 0.25), 0.7
  step = jax.jit(make_nested_draft_step(model, TASKS, tx, method, "tokens", widths, kd))
  new_state, metrics = step(state, batch)

  def ce(logits, targets):
    w = (targets >= 0).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(targets, 0))
    return jnp.sum(nll * w) / jnp.sum(w)

  def plain_total(params):
    full = model.apply({"params": params}, tokens)["a"]
    total = ce(full, batch["a"]) + ce(full, batch["b"])
    for w in widths:
      sub = model.apply({"params": params}, tokens, width=w)["a"]
      total += ce(sub, batch["a"]) + ce(sub, batch["b"])
      teacher = jax.nn.softmax(jax.lax.stop_gradient(full))
      kl = lambda t: jnp.sum(jnp.sum(teacher * (jnp.log(teacher) - jax.nn.log_softmax(sub)), -1)
                             * (t >= 0)) / jnp.sum(t >= 0)
      total += kd * (kl(batch["a"]) + kl(batch["b"])) / 2  # kd x the mean KL over tasks
    return total

  grads = jax.grad(plain_total)(state.params)
  want = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert set(metrics["scalars"]) >= {"draft/0.5/kl", "draft/0.25/loss", "loss/a"}
  assert float(metrics["scalars"]["draft/0.5/kl"]) > 0
