"""Train-step variant 'teacher_distill': per-task loss + kd_weight * KL(teacher || student), float64-checked; the
config path (a teacher checkpoint of another architecture) end to end; bad configs name the field."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import mqar as mqar_config
from mtl.optim import get_method
from mtl.tasks.base import TaskSpec
from mtl.train import loop
from mtl.train.metric_writer import read_metrics
from mtl.train.step import make_train_step
from mtl.train.teacher_distill import check_teacher_config, distill_kl, make_teacher_distill_step

TASKS = (TaskSpec("a", "classification", 4), TaskSpec("b", "classification", 4))


class Net(nn.Module):
  hidden: int = 8

  @nn.compact
  def __call__(self, x, *, train=False):
    del train
    h = nn.tanh(nn.Dense(self.hidden, name="enc")(x))
    return {t.name: nn.Dense(4, name=f"head_{t.name}")(h) for t in TASKS}


def _log_softmax64(x):
  x = np.asarray(x, np.float64)
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _setup(teacher_hidden=8):
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(6, 5)) * np.array([1e-3, 1, 50, 1, 1]), jnp.float32),
           "a": jnp.asarray(rng.integers(0, 4, 6)), "b": jnp.asarray(rng.integers(0, 4, 6))}
  student, tx, method = Net(), optax.sgd(0.1), get_method("equal", 2)
  state = loop.init_state(student, tx, method, (5,), seed=0)
  teacher = Net(teacher_hidden)
  t_params = teacher.init(jax.random.PRNGKey(7), batch["image"])["params"]
  return student, tx, method, batch, state, teacher, t_params


def test_objective_and_logged_kl_match_float64_reference():
  student, tx, method, batch, state, teacher, t_params = _setup(teacher_hidden=12)   # another architecture
  step = jax.jit(make_teacher_distill_step(student, TASKS, tx, method, "image", teacher, t_params, {}, 0.7))
  _, metrics = step(state, batch)
  s_out = student.apply({"params": state.params}, batch["image"])
  t_out = teacher.apply({"params": t_params}, batch["image"])
  objective = 0.0
  for t in TASKS:
    ls, lt = _log_softmax64(s_out[t.name]), _log_softmax64(t_out[t.name])
    ce = -np.mean(np.take_along_axis(ls, np.asarray(batch[t.name])[:, None], 1))
    kl = np.mean(np.sum(np.exp(lt) * (lt - ls), -1))
    np.testing.assert_allclose(float(metrics["scalars"][f"distill/{t.name}/kl"]), kl, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["scalars"][f"loss/{t.name}"]), ce, rtol=1e-5)
    objective += ce + 0.7 * kl
  np.testing.assert_allclose(float(metrics["scalars"]["objective"]), objective, rtol=1e-5)


def test_teacher_equal_to_student_gives_the_standard_update():
  # KL(p || q) and its gradient in q vanish at q = p: with the student's own parameters as teacher the update
  # is the standard step's; with another teacher it is not.
  student, tx, method, batch, state, _, _ = _setup()
  plain, _ = jax.jit(make_train_step(student, TASKS, tx, method, "image"))(state, batch)
  same, m = jax.jit(make_teacher_distill_step(student, TASKS, tx, method, "image", student, state.params, {},
                                              5.0))(state, batch)
  for a, b in zip(jax.tree.leaves(same.params), jax.tree.leaves(plain.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert abs(float(m["scalars"]["distill/a/kl"])) < 1e-6
  _, _, _, _, _, teacher, t_params = _setup()
  other, _ = jax.jit(make_teacher_distill_step(student, TASKS, tx, method, "image", teacher, t_params, {},
                                               5.0))(state, batch)
  assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(other.params),
                                                          jax.tree.leaves(plain.params))) > 1e-4


def test_distill_kl_rejects_mismatched_shapes():
  t = jnp.zeros((2, 3, 5))
  with pytest.raises(ValueError, match="teacher logits"):
    distill_kl(t, t[..., :4], jnp.zeros((2, 3), jnp.int32))
  with pytest.raises(ValueError, match="leading shape"):
    distill_kl(t, t, jnp.zeros((2,), jnp.int32))


@pytest.mark.parametrize("teacher, match", [
    (None, "config.teacher.workdir"), (dict(workdir=""), "config.teacher.workdir"),
    (dict(workdir="/x", kd_weight=0.0), "kd_weight must be finite and > 0"),
    (dict(workdir="/x", kd_weight=float("nan")), "kd_weight"),
    (dict(workdir="/x", step=-1), "config.teacher.step")])
def test_bad_teacher_configs(teacher, match):
  with pytest.raises(ValueError, match=match):
    check_teacher_config(None if teacher is None else ml_collections.ConfigDict(teacher))


def _tiny_lm(steps, **lm):
  cfg = mqar_config.get_config(f"mixer=softmax,data=mqar-16-2-16,steps={steps},dim=16")
  cfg.batch_size, cfg.eval_batch_size, cfg.log_every = 8, 8, 1
  cfg.model.lm.depth = 1
  cfg.model.lm.update(lm)
  return cfg


def test_config_path_distils_a_gqa_student_from_a_multi_head_checkpoint(tmp_path):
  teacher_dir, student_dir = str(tmp_path / "mha"), str(tmp_path / "gqa")
  loop.train_and_evaluate(_tiny_lm(2), teacher_dir, progress=False, stop_at_step=2)
  cfg = _tiny_lm(2, num_kv_heads=1)
  cfg.train_step = "teacher_distill"
  cfg.teacher = ml_collections.ConfigDict({"workdir": teacher_dir, "step": None, "kd_weight": 0.5})
  loop.train_and_evaluate(cfg, student_dir, progress=False, stop_at_step=2)
  rows = read_metrics(student_dir, "train")
  kls = [r[k] for r in rows for k in r if k.startswith("distill/") and k.endswith("/kl")]
  assert len(kls) == 2 and all(np.isfinite(kls)) and min(kls) > 0      # one task, two logged steps
  bad = _tiny_lm(2)
  bad.teacher = ml_collections.ConfigDict({"workdir": teacher_dir})       # a teacher the standard step ignores
  with pytest.raises(ValueError, match="config.teacher.workdir is set but config.train_step is 'standard'"):
    loop.train_and_evaluate(bad, str(tmp_path / "bad"), progress=False)
