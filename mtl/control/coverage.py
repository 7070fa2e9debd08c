"""Which sub-networks the sandwich step trains: a covering schedule of (encoder width, head width) pairs.

Beside the largest and the smallest configuration, each step trains `num_random` students. Students are
consumed in draw order d = (step - 1) * num_random + j (step 1-based, j < num_random). Draws come in blocks of
sum(head_counts) * sum(counts) (W allowed widths; `counts[e]` >= 1 copies of encoder width e and
`head_counts[h]` >= 1 copies of head width h per block, all 1 by default, so blocks of W * W): block b visits
every (encoder e, head h) index pair of *every* task exactly counts[e] * head_counts[h] times, in an order fresh
per block, with each task's head widths permuted independently within each (encoder width, copy). So within
ceil(sum(head_counts) * sum(counts) / num_random) steps every (encoder width, head width) pair of every task is
trained, the configurations (the joint choice over tasks) are freshly sampled every block, encoder width e is a
student in a share counts[e] / sum(counts) of the draws and head width h in a share head_counts[h] /
sum(head_counts) (e.g. counts (1, 3, 3, 1) spend 3/4 of the students on the middle widths, which the largest and
smallest configurations never train; head_counts (1, 3, 3, 1) do the same for every task's head).

With `shared_heads`, a student's head width is the same for every task (the slot's head rank): every pair of every
task is still covered per block, the joint choice over tasks is not sampled (it does not change any task's
output, which depends only on the encoder width and its own head width), and the host can name the whole student
by (encoder width, head width), so the sandwich step slices it instead of masking full-width heads
(`control.sliced_students`).

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


def check_counts(counts: tuple[int, ...] | None, num_widths: int, what: str = "encoder") -> tuple[int, ...]:
  """`counts` (copies of each `what` ('encoder' or 'head') width per block, ascending widths; None = all 1)
  validated: one int in [1, 64] per width, else ValueError naming it."""
  if counts is None:
    return (1,) * num_widths
  counts = tuple(counts)
  if len(counts) != num_widths or any(int(c) != c or not 1 <= c <= 64 for c in counts):
    raise ValueError(f"{what} counts {counts} must be {num_widths} integers in [1, 64] (one per width, ascending; "
                     ">= 1 so every (encoder width, head width) pair stays covered)")
  return tuple(int(c) for c in counts)


def block_size(num_widths: int, counts: tuple[int, ...] | None = None,
               head_counts: tuple[int, ...] | None = None) -> int:
  """Draws per covering block: sum(head_counts) * sum(counts) (W * W with the defaults)."""
  return sum(check_counts(head_counts, num_widths, "head")) * sum(check_counts(counts, num_widths))


def student_draw(seed: int, draw, num_widths: int, num_tasks: int, counts: tuple[int, ...] | None = None,
                 head_counts: tuple[int, ...] | None = None, shared_heads: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
  """(encoder width index int32 [], head width indices int32 [num_tasks]) of student number `draw` (0-based).

  `draw` may be a Python int or a traced int32 scalar; `seed` is a Python int; `counts` / `head_counts`: copies
  of each encoder / head width per block (None = one each); `shared_heads`: one head width for every task.
  Indices are into the sorted allowed widths.
  """
  if num_widths < 1 or num_tasks < 1:
    raise ValueError(f"need num_widths >= 1 and num_tasks >= 1, got {num_widths}, {num_tasks}")
  counts = check_counts(counts, num_widths)
  head_counts = check_counts(head_counts, num_widths, "head")
  # Slot s of a block -> (encoder e, copy c, head rank r), enumerated e-major; rank r < sum(head_counts) indexes
  # the head-width multiset (width h head_counts[h] times); with one copy each, s = e * W + r.
  per_copy = sum(head_counts)
  head_multiset = jnp.asarray(np.repeat(np.arange(num_widths), head_counts), jnp.int32)
  slot_enc = np.repeat(np.arange(num_widths), [c * per_copy for c in counts])
  slot_copy = np.concatenate([np.repeat(np.arange(c), per_copy) for c in counts])
  slot_rank = np.tile(np.arange(per_copy), sum(counts))
  slots = len(slot_enc)
  draw = jnp.asarray(draw, jnp.int32)
  block_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), _SALT), draw // slots)
  slot = jax.random.permutation(jax.random.fold_in(block_key, 0), slots)[draw % slots]
  enc, rank = jnp.asarray(slot_enc)[slot], jnp.asarray(slot_rank)[slot]
  if shared_heads:
    return enc.astype(jnp.int32), jnp.full((num_tasks,), head_multiset[rank], jnp.int32)
  stream = enc + num_widths * jnp.asarray(slot_copy)[slot]  # = enc for the first copy
  task_keys = jax.vmap(lambda t: jax.random.fold_in(jax.random.fold_in(block_key, 1 + t), stream))(
      jnp.arange(num_tasks))
  heads = jax.vmap(lambda k: jax.random.permutation(k, head_multiset)[rank])(task_keys)
  return enc.astype(jnp.int32), heads.astype(jnp.int32)


def step_draws(seed: int, step, num_random: int, num_widths: int, num_tasks: int,
               counts: tuple[int, ...] | None = None, head_counts: tuple[int, ...] | None = None,
               shared_heads: bool = False) -> tuple[jax.Array, jax.Array]:
  """Encoder indices int32 [num_random] and head indices int32 [num_random, num_tasks] of the students of
  `step` (1-based; a Python int or a traced int32)."""
  if num_random < 1:
    raise ValueError(f"num_random must be >= 1, got {num_random}")
  first = (jnp.asarray(step, jnp.int32) - 1) * num_random
  return jax.vmap(lambda j: student_draw(seed, first + j, num_widths, num_tasks, counts, head_counts,
                                         shared_heads))(jnp.arange(num_random))


_host_draws = jax.jit(step_draws, static_argnums=(0, 2, 3, 4, 5, 6, 7))


def _host_student_draws(seed: int, step: int, num_random: int, widths: tuple[float, ...], num_tasks: int,
                        counts: tuple[int, ...] | None, head_counts: tuple[int, ...] | None, shared_heads: bool
                        ) -> tuple[list[float], np.ndarray, np.ndarray]:
  """(sorted widths, encoder indices [num_random], head indices [num_random, num_tasks]) of `step`, on the host."""
  counts = check_counts(counts, len(widths))
  head_counts = check_counts(head_counts, len(widths), "head")
  enc, heads = _host_draws(seed, jnp.int32(step), num_random, len(widths), num_tasks, counts, head_counts,
                           shared_heads)
  return sorted(float(w) for w in widths), np.asarray(enc), np.asarray(heads)


def encoder_key(seed: int, step: int, num_random: int, widths: tuple[float, ...], num_tasks: int,
                counts: tuple[int, ...] | None = None, head_counts: tuple[int, ...] | None = None
                ) -> tuple[float, ...]:
  """The students' encoder widths at `step` (host side; the `ScheduledStep` key)."""
  ws, enc, _ = _host_student_draws(seed, step, num_random, widths, num_tasks, counts, head_counts, False)
  return tuple(ws[int(i)] for i in enc)


def sliced_key(seed: int, step: int, num_random: int, widths: tuple[float, ...], num_tasks: int,
               counts: tuple[int, ...] | None = None, head_counts: tuple[int, ...] | None = None
               ) -> tuple[tuple[float, float], ...]:
  """The students of `step` as ((encoder width, head width of every task), ...) with shared head widths (host
  side; the `ScheduledStep` key of `control.sliced_students`)."""
  ws, enc, heads = _host_student_draws(seed, step, num_random, widths, num_tasks, counts, head_counts, True)
  return tuple((ws[int(e)], ws[int(h[0])]) for e, h in zip(enc, heads))
