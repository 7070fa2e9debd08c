"""Which sub-networks the sandwich step trains: a covering schedule of (encoder width, head width) pairs.

Beside the largest and the smallest configuration, each step trains `num_random` students. Students are
consumed in draw order d = (step - 1) * num_random + j (step 1-based, j < num_random). Draws come in blocks of
W * W (W allowed widths): block b visits the W * W (encoder, head) index pairs of *every* task exactly once, in
an order fresh per block, with each task's head widths permuted independently within each encoder width. So
within ceil(W * W / num_random) steps every (encoder width, head width) pair of every task is trained, and the
configurations (the joint choice over tasks) are freshly sampled every block.

`student_draw` is plain `jax.numpy` and deterministic in (seed, draw): the host evaluates it (Python ints) to
pick the compiled variant (the encoder widths set shapes), and the compiled step evaluates the same function on
the traced step number to get the head widths (applied as channel masks, so they need no recompilation). A
resumed run redraws exactly the same students.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_SALT = 16


def student_draw(seed: int, draw, num_widths: int, num_tasks: int) -> tuple[jax.Array, jax.Array]:
  """(encoder width index int32 [], head width indices int32 [num_tasks]) of student number `draw` (0-based).

  `draw` may be a Python int or a traced int32 scalar; `seed` is a Python int. Indices are into the sorted
  allowed widths.
  """
  if num_widths < 1 or num_tasks < 1:
    raise ValueError(f"need num_widths >= 1 and num_tasks >= 1, got {num_widths}, {num_tasks}")
  slots = num_widths * num_widths
  draw = jnp.asarray(draw, jnp.int32)
  block_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _SALT), draw // slots)
  slot = jax.random.permutation(jax.random.fold_in(block_key, 0), slots)[draw % slots]
  enc, rank = slot // num_widths, slot % num_widths
  task_keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.fold_in(block_key, 1 + t), enc))(
      jnp.arange(num_tasks))
  heads = jax.vmap(lambda k: jax.random.permutation(k, num_widths)[rank])(task_keys)
  return enc.astype(jnp.int32), heads.astype(jnp.int32)


def step_draws(seed: int, step, num_random: int, num_widths: int, num_tasks: int) -> tuple[jax.Array, jax.Array]:
  """Encoder indices int32 [num_random] and head indices int32 [num_random, num_tasks] of the students of
  `step` (1-based; a Python int or a traced int32)."""
  if num_random < 1:
    raise ValueError(f"num_random must be >= 1, got {num_random}")
  first = (jnp.asarray(step, jnp.int32) - 1) * num_random
  return jax.vmap(lambda j: student_draw(seed, first + j, num_widths, num_tasks))(jnp.arange(num_random))


_host_draws = jax.jit(step_draws, static_argnums=(0, 2, 3, 4))


def encoder_key(seed: int, step: int, num_random: int, widths: tuple[float, ...], num_tasks: int
                ) -> tuple[float, ...]:
  """The students' encoder widths at `step` (host side; the `ScheduledStep` key)."""
  enc, _ = _host_draws(seed, jnp.int32(step), num_random, len(widths), num_tasks)
  ws = sorted(float(w) for w in widths)
  return tuple(ws[int(i)] for i in np.asarray(enc))
