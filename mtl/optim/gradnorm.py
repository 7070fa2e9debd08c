"""GradNorm (Chen et al. 2018): learn task weights w (state 'weights', init 1, sum T) so that the weighted
gradient norms w_i |g_i| track mean_j(w_j |g_j|) * r_i^alpha, r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)).

w is updated by Adam(lr) on the L1 gap (targets held constant, as in the paper) and renormalised to sum T;
the model gradient is sum_i w_i g_i with the weights before the update. |g_i| is the norm over all parameters
(the paper uses the last shared layer). L(0) is the first step's losses (state 'initial_losses').
"""
from __future__ import annotations

import jax.numpy as jnp
import optax

from mtl.optim.base import Method, weight_metrics
from mtl.optim.registry import register


@register("gradnorm")
def gradnorm(num_tasks: int, alpha: float = 1.5, lr: float = 0.025) -> Method:
  if alpha < 0:
    raise ValueError(f"gradnorm alpha must be >= 0, got {alpha}")
  if lr <= 0:
    raise ValueError(f"gradnorm lr must be > 0, got {lr}")
  opt = optax.adam(lr)

  def init_fn(params):
    del params
    w = jnp.ones((num_tasks,), jnp.float32)
    return {"weights": w, "opt": opt.init(w), "initial_losses": jnp.ones((num_tasks,), jnp.float32),
            "seen": jnp.zeros((), jnp.int32)}

  def fn(gram, losses, state, step):
    del step
    w = state["weights"]
    l0 = jnp.where(state["seen"] > 0, state["initial_losses"], losses)
    norms = jnp.sqrt(jnp.maximum(jnp.diag(gram), 0.0))
    wn = w * norms
    ratio = losses / jnp.maximum(l0, 1e-12)
    rel = ratio / jnp.maximum(jnp.mean(ratio), 1e-12)
    target = jnp.mean(wn) * rel ** alpha
    grad_w = jnp.sign(wn - target) * norms
    upd, opt_state = opt.update(grad_w, state["opt"], w)
    new_w = jnp.maximum(optax.apply_updates(w, upd), 1e-6)
    new_w = num_tasks * new_w / jnp.sum(new_w)
    new_state = {"weights": new_w, "opt": opt_state, "initial_losses": l0, "seen": state["seen"] + 1}
    return w, new_state, weight_metrics(w)

  return Method("gradnorm", num_tasks, "gramian", fn, init_fn)
