"""Loss-weighting methods: task weights from the loss values only (one backward pass of sum_i w_i L_i).

Weight scale: 'equal' uses w_i = 1 (the plain sum of task losses); methods that define a distribution over
tasks (FAMO) keep their papers' scale, documented per method.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mtl.optim.base import Method, step_key, weight_metrics
from mtl.optim.registry import register


@register("equal")
def equal(num_tasks: int) -> Method:
  """w_i = 1: the gradient of sum_i L_i."""
  def fn(losses, state, step):
    del step
    w = jnp.ones_like(losses)
    return w, state, weight_metrics(w)
  return Method("equal", num_tasks, "loss", fn)


@register("static")
def static(num_tasks: int, weights=()) -> Method:
  """w_i = weights[i], fixed (the hand-set task weights of the dense-prediction papers, e.g. InvPT's NYUD
  semseg 1, depth 1, normals 10, edge 50), in the order of the config's tasks."""
  w_fixed = tuple(float(w) for w in weights)
  if len(w_fixed) != num_tasks or any(not w > 0 for w in w_fixed):
    raise ValueError(f"static weights need {num_tasks} positive values (one per task), got {weights!r}")

  def fn(losses, state, step):
    del step
    w = jnp.asarray(w_fixed, losses.dtype)
    return w, state, weight_metrics(w)
  return Method("static", num_tasks, "loss", fn)


def _task_tuple(value, num_tasks: int, name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
  values = (value,) * num_tasks if isinstance(value, str) else tuple(value)
  if len(values) != num_tasks:
    raise ValueError(f"{name} must be one string or {num_tasks} strings, got {value!r}")
  for v in values:
    if v not in allowed:
      raise ValueError(f"{name}: unknown entry {v!r}; allowed: {allowed}")
  return values


def _positive(name: str, value: float) -> float:
  if not value > 0:
    raise ValueError(f"{name} must be > 0, got {value}")
  return float(value)


@register("uncertainty")
def uncertainty(num_tasks: int, forms="regression", lr: float = 1e-2) -> Method:
  """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018).

  Learns s_i = log sigma_i^2 (state 'log_vars', init 0) by Adam(lr) on
    regression:     L_i / (2 sigma_i^2) + log sigma_i = 0.5 exp(-s_i) L_i + s_i / 2
    classification: L_i / sigma_i^2 + log sigma_i     =     exp(-s_i) L_i + s_i / 2
  and weights the model gradient by w_i = c_i exp(-s_i), c_i = 0.5 or 1. `forms`: one string or one per task.
  """
  forms = _task_tuple(forms, num_tasks, "uncertainty forms", ("regression", "classification"))
  c = jnp.asarray([0.5 if f == "regression" else 1.0 for f in forms], jnp.float32)
  opt = optax.adam(_positive("uncertainty lr", lr))

  def init_fn(params):
    del params
    s = jnp.zeros((num_tasks,), jnp.float32)
    return {"log_vars": s, "opt": opt.init(s)}

  def fn(losses, state, step):
    del step
    s = state["log_vars"]
    w = c * jnp.exp(-s)
    grad_s = -w * losses + 0.5
    upd, opt_state = opt.update(grad_s, state["opt"], s)
    new_s = optax.apply_updates(s, upd)
    metrics = {**weight_metrics(w), **{f"log_var/{i}": s[i] for i in range(num_tasks)}}
    return w, {"log_vars": new_s, "opt": opt_state}, metrics

  return Method("uncertainty", num_tasks, "loss", fn, init_fn)


@register("dwa")
def dwa(num_tasks: int, temperature: float = 2.0, smoothing: float = 0.9) -> Method:
  """Dynamic Weight Average (Liu, Johns & Davison 2019): w = T softmax(r / temperature), r_i = l_i(t-1)/l_i(t-2).

  The paper uses epoch-mean losses; here l(t) is an exponential moving average of the per-step losses with
  decay `smoothing` (0 = raw step losses). w = 1 for the first two steps.
  """
  temperature = _positive("dwa temperature", temperature)
  if not 0.0 <= smoothing < 1.0:
    raise ValueError(f"dwa smoothing must be in [0, 1), got {smoothing}")

  def init_fn(params):
    del params
    # distinct buffers: the train step donates the state
    return {"avg1": jnp.zeros((num_tasks,), jnp.float32), "avg2": jnp.zeros((num_tasks,), jnp.float32),
            "seen": jnp.zeros((), jnp.int32)}

  def fn(losses, state, step):
    del step
    seen = state["seen"]
    ratio = state["avg1"] / jnp.maximum(state["avg2"], 1e-12)
    w = jnp.where(seen >= 2, num_tasks * jax.nn.softmax(ratio / temperature), jnp.ones_like(losses))
    avg = jnp.where(seen >= 1, smoothing * state["avg1"] + (1.0 - smoothing) * losses, losses)
    return w, {"avg1": avg, "avg2": state["avg1"], "seen": seen + 1}, weight_metrics(w)

  return Method("dwa", num_tasks, "loss", fn, init_fn)


@register("gls")
def gls(num_tasks: int, eps: float = 1e-12) -> Method:
  """Geometric Loss Strategy (Chennupati et al. 2019): minimise (prod_i L_i)^(1/T).

  Its gradient is sum_i w_i grad L_i with w_i = GM / (T L_i), GM the geometric mean; losses must be > 0.
  """
  def fn(losses, state, step):
    del step
    safe = jnp.maximum(losses, eps)
    gm = jnp.exp(jnp.mean(jnp.log(safe)))
    w = gm / (num_tasks * safe)
    return w, state, weight_metrics(w)
  return Method("gls", num_tasks, "loss", fn)


@register("rlw")
def rlw(num_tasks: int, seed: int = 0) -> Method:
  """Random Loss Weighting (Lin et al. 2022): w = T softmax(z), z ~ N(0, I) drawn afresh every step."""
  def fn(losses, state, step):
    z = jax.random.normal(step_key(seed, step), (num_tasks,), jnp.float32)
    w = num_tasks * jax.nn.softmax(z)
    return w.astype(losses.dtype), state, weight_metrics(w)
  return Method("rlw", num_tasks, "loss", fn)


@register("famo")
def famo(num_tasks: int, lr: float = 0.025, weight_decay: float = 1e-3, min_losses=0.0, eps: float = 1e-8) -> Method:
  """Fast Adaptive Multitask Optimization (Liu et al. 2023).

  Task logits xi (init 0), z = softmax(xi). Model gradient: grad of sum_i z_i log(L_i - min_i + eps) / c,
  c = sum_i z_i / (L_i - min_i + eps), i.e. w_i = z_i / (c (L_i - min_i + eps)) (sum to 1). Each step first
  updates xi by Adam(lr) with L2 `weight_decay` on the gradient J_softmax^T delta,
  delta = log(L(t-1) - min + eps) - log(L(t) - min + eps) (the paper evaluates L(t) on the same batch after the
  step; here the next step's losses stand in, so no extra forward pass is needed).
  """
  opt = optax.chain(optax.add_decayed_weights(float(weight_decay)), optax.adam(_positive("famo lr", lr)))
  mins = jnp.broadcast_to(jnp.asarray(min_losses, jnp.float32), (num_tasks,))

  def init_fn(params):
    del params
    xi = jnp.zeros((num_tasks,), jnp.float32)
    return {"logits": xi, "opt": opt.init(xi), "prev": jnp.zeros((num_tasks,), jnp.float32),
            "seen": jnp.zeros((), jnp.int32)}

  def fn(losses, state, step):
    del step
    xi = state["logits"]
    d_cur = losses - mins + eps
    delta = jnp.log(state["prev"] - mins + eps) - jnp.log(d_cur)
    z_old = jax.nn.softmax(xi)
    g_xi = z_old * (delta - jnp.dot(z_old, delta))
    upd, opt_state = opt.update(g_xi, state["opt"], xi)
    new_xi = optax.apply_updates(xi, upd)
    has_prev = state["seen"] >= 1
    xi = jnp.where(has_prev, new_xi, xi)
    opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(has_prev, a, b), opt_state, state["opt"])
    z = jax.nn.softmax(xi)
    c = jnp.sum(z / d_cur)
    w = z / (c * d_cur)
    new_state = {"logits": xi, "opt": opt_state, "prev": losses.astype(jnp.float32), "seen": state["seen"] + 1}
    return w, new_state, weight_metrics(w)

  return Method("famo", num_tasks, "loss", fn, init_fn)
