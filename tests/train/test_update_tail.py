"""Every train-step variant ends in the same update tail (mtl.train.step.finish_step): sown auxiliary losses
(e.g. MoE load balancing) are in the objective of every sub-network, and batch statistics are kept, in the
standard, sandwich and nested-draft steps alike."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mtl.control import widths as widths_lib
from mtl.control.cikd import cikd_loss
from mtl.control import coverage
from mtl.control.sandwich_step import make_sandwich_train_step
from mtl.nested_draft import distill_kl, make_nested_draft_step
from mtl.nn.slimmable import SlimDense
from mtl.optim import get_method
from mtl.tasks.base import TaskSpec
from mtl.train import loop
from mtl.train.step import make_train_step, task_losses_and_stats

TASKS = (TaskSpec("a", "classification", 3), TaskSpec("b", "classification", 3))
AUX = 0.3


class AuxNet(nn.Module):
  """Width-sliceable features that sow an auxiliary loss, and batch-normalised heads (fixed output shape)."""

  def slim(self, width):
    return self

  def head_mask_tables(self, widths):
    return {}  # fixed-width heads: nothing to mask

  @nn.compact
  def __call__(self, x, *, train=False, width=1.0, encoder_width=1.0, head_widths=None, return_features=False,
               head_masks=None):
    del head_widths, head_masks
    h = nn.relu(SlimDense(16, name="enc")(x, int(16 * width * encoder_width)))
    self.sow("aux_loss", "balance", AUX * jnp.mean(h ** 2))
    out = {t.name: nn.BatchNorm(use_running_average=not train, name=f"bn_{t.name}")(
        SlimDense(3, name=f"head_{t.name}")(h)) for t in TASKS}
    return (out, h) if return_features else out


def _setup():
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(8, 5)), jnp.float32),
           "a": jnp.asarray(rng.integers(0, 3, 8)), "b": jnp.asarray(rng.integers(0, 3, 8))}
  model, tx, method = AuxNet(), optax.sgd(0.1), get_method("equal", 2)
  return model, tx, method, batch, loop.init_state(model, tx, method, (5,), seed=0)


def _run(model, state, x, **kw):
  """(outputs, features or None, aux loss, batch_stats) of one training-mode forward pass."""
  dropout = jax.random.split(jax.random.fold_in(state.rng, state.step))[0]
  out, mut = model.apply({"params": state.params, **state.model_state}, x, train=True, rngs={"dropout": dropout},
                         mutable=["aux_loss", "batch_stats"], **kw)
  aux = sum(float(jnp.sum(v)) for v in jax.tree.leaves(mut["aux_loss"]))
  return out, aux, mut["batch_stats"]


def _check_tail(metrics, new_state, teacher_aux, teacher_stats, objective):
  assert teacher_aux > 0
  np.testing.assert_allclose(float(metrics["scalars"]["aux_loss"]), teacher_aux, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["scalars"]["objective"]), objective, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(new_state.model_state["batch_stats"]), jax.tree.leaves(teacher_stats)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_standard_step_keeps_aux_and_batch_stats():
  model, tx, method, batch, state = _setup()
  new_state, metrics = jax.jit(make_train_step(model, TASKS, tx, method, "image"))(state, batch)
  out, aux, stats = _run(model, state, batch["image"])
  losses, _ = task_losses_and_stats(out, batch, TASKS)
  _check_tail(metrics, new_state, aux, stats, float(jnp.sum(losses)) + aux)


def test_sandwich_step_keeps_aux_of_every_subnetwork_and_teacher_batch_stats():
  model, tx, method, batch, state = _setup()
  control = ml_collections.ConfigDict(dict(widths=(0.5, 1.0), num_random=1, cikd_weight=0.7))
  enc = coverage.encoder_key(0, 1, 1, (0.5, 1.0), len(TASKS))
  step = make_sandwich_train_step(model, TASKS, tx, method, "image", control, seed=0, encoder_widths=enc)
  new_state, metrics = jax.jit(step)(state, batch)
  names = [t.name for t in TASKS]
  configs = [widths_lib.largest((0.5, 1.0), names), widths_lib.smallest((0.5, 1.0), names),
             widths_lib.WidthConfig.create(enc[0], {t: 1.0 for t in names})]
  objective, auxes, feats = 0.0, [], []
  for cfg in configs:
    (out, f), aux, stats = _run(model, state, batch["image"], return_features=True, **cfg.apply_kwargs())
    objective += float(jnp.sum(task_losses_and_stats(out, batch, TASKS)[0])) + aux
    auxes.append((aux, stats))
    feats.append(f)
  objective += 0.7 * sum(float(cikd_loss(f, feats[0])) for f in feats[1:])
  _check_tail(metrics, new_state, auxes[0][0], auxes[0][1], objective)
  np.testing.assert_allclose(float(metrics["scalars"]["aux_loss/all"]), sum(a for a, _ in auxes), rtol=1e-5)


def test_nested_draft_step_keeps_aux_of_every_width_and_full_batch_stats():
  model, tx, method, batch, state = _setup()
  step = make_nested_draft_step(model, TASKS, tx, method, "image", widths=(0.5,), kd_weight=0.4)
  new_state, metrics = jax.jit(step)(state, batch)
  full, aux_full, stats = _run(model, state, batch["image"])
  half, aux_half, _ = _run(model, state, batch["image"], width=0.5)
  kl = sum(float(distill_kl(full[t.name], half[t.name], batch[t.name])) for t in TASKS) / 2
  objective = (float(jnp.sum(task_losses_and_stats(full, batch, TASKS)[0]))
               + float(jnp.sum(task_losses_and_stats(half, batch, TASKS)[0])) + 0.4 * kl + aux_full + aux_half)
  _check_tail(metrics, new_state, aux_full, stats, objective)
