"""Batched generation: prefill, then a jitted `lax.while_loop` of decode steps.

`generate(model, params, prompts, prompt_lengths, ...)` works for any model
with DecoderLM's decode methods (`init_cache`, `prefill`, `step`): softmax
layers keep a KV cache, lightning layers a constant-size recurrent state,
and each step runs the Pallas decode kernels when the model's impl='pallas'.

Ragged prompts: the shortest prompt length P0 is prefilled in parallel; row b
then feeds its remaining prompt tokens through decode steps (forced, not
sampled) before sampling starts at its own position prompt_lengths[b].

Sampling at position t uses key fold_in(rng, t) (the same key for every row;
rows differ through their logits): greedy (temperature 0), temperature, and
top-k. A row stops after emitting any of `stop_tokens`; later positions hold
`pad_token`. The loop ends when all rows stopped or the buffer is full.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def sample_logits(logits: jax.Array, rng: jax.Array, temperature: float = 0.0,
                  top_k: int = 0) -> jax.Array:
  """logits [B, V] -> token ids int32 [B]. temperature 0: argmax."""
  if temperature < 0 or top_k < 0:
    raise ValueError(f"temperature and top_k must be >= 0, got {temperature}, {top_k}")
  if temperature == 0.0:
    return jnp.argmax(logits, -1).astype(jnp.int32)
  return jax.random.categorical(
      rng, process_logits(logits, temperature, top_k), axis=-1).astype(jnp.int32)


def process_logits(logits: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """Temperature-scaled logits with all but the top_k set to -inf (top_k 0: all)."""
  logits = logits.astype(jnp.float32) / temperature
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return logits


def round_up(n: int, multiple: int) -> int:
  return multiple * ((n + multiple - 1) // multiple)


@functools.partial(jax.jit, static_argnames=(
    "model", "prefill_len", "total_len", "cache_len", "temperature", "top_k",
    "stop_tokens", "pad_token"))
def _generate(model, params, prompts, prompt_lengths, rng, *, prefill_len,
              total_len, cache_len, temperature, top_k, stop_tokens, pad_token):
  b = prompts.shape[0]
  ap = lambda f, *a: model.apply({"params": params}, *a, method=f)
  cache = ap(type(model).init_cache, b, cache_len)
  logits, cache = ap(type(model).prefill, prompts[:, :prefill_len], cache)
  buf = jnp.full((b, total_len), pad_token, jnp.int32)
  buf = buf.at[:, :prompts.shape[1]].set(prompts.astype(jnp.int32))
  stops = jnp.asarray(stop_tokens or (-1,), jnp.int32)

  def cond(c):
    t, _, _, _, done = c
    return (t < total_len) & ~jnp.all(done)

  def body(c):
    t, buf, cache, last, done = c
    sampled = sample_logits(last, jax.random.fold_in(rng, t), temperature, top_k)
    forced = t < prompt_lengths
    tok = jnp.where(forced, buf[:, t], jnp.where(done, pad_token, sampled))
    buf = jax.lax.dynamic_update_slice(buf, tok[:, None], (0, t))
    done = done | (~forced & jnp.isin(tok, stops))
    last, cache = ap(type(model).step, tok, cache)
    return t + 1, buf, cache, last, done

  init = (jnp.int32(prefill_len), buf, cache, logits[:, -1],
          jnp.zeros((b,), bool))
  t, buf, _, _, done = jax.lax.while_loop(cond, body, init)
  return buf, t, done


def generate(model: Any, params: Any, prompts: np.ndarray,
             prompt_lengths: np.ndarray | Sequence[int] | None = None, *,
             max_new_tokens: int, rng: jax.Array | None = None,
             temperature: float = 0.0, top_k: int = 0,
             stop_tokens: Sequence[int] = (), pad_token: int = 0,
             cache_multiple: int = 16) -> dict[str, np.ndarray]:
  """Generates up to max_new_tokens after each prompt.

  Args:
    model: a DecoderLM (unbound). params: its parameters.
    prompts: int [B, P] (rows padded after their length). prompt_lengths:
      int [B] in [1, P] (default all P).
    max_new_tokens: tokens generated after the longest prompt.
    rng: PRNG key (needed when temperature > 0).
    cache_multiple: KV cache length is rounded up to this (Pallas block).
  Returns:
    tokens int32 [B, P + max_new_tokens] (prompt, generated, pad_token after
    a stop); lengths int [B] (tokens up to and including the stop token, or
    the whole buffer); steps: positions decoded.
  """
  prompts = np.asarray(prompts)
  if prompts.ndim != 2 or prompts.shape[1] < 1:
    raise ValueError(f"prompts must be int [B, P] with P >= 1, got {prompts.shape}")
  b, p = prompts.shape
  lengths = (np.full((b,), p) if prompt_lengths is None
             else np.asarray(prompt_lengths).astype(np.int32))
  if lengths.shape != (b,) or lengths.min() < 1 or lengths.max() > p:
    raise ValueError(f"prompt_lengths must be [B={b}] in [1, {p}], got {lengths}")
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature > 0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng key")
  rng = jax.random.PRNGKey(0) if rng is None else rng
  total = p + max_new_tokens
  buf, steps, done = _generate(
      model, params, jnp.asarray(prompts, jnp.int32), jnp.asarray(lengths),
      rng, prefill_len=int(lengths.min()), total_len=total,
      cache_len=round_up(total, cache_multiple), temperature=float(temperature),
      top_k=int(top_k), stop_tokens=tuple(int(s) for s in stop_tokens),
      pad_token=int(pad_token))
  buf = np.asarray(buf)
  out_len = np.full((b,), total)
  if stop_tokens:
    for r in range(b):
      gen = buf[r, lengths[r]:]
      hit = np.nonzero(np.isin(gen, list(stop_tokens)))[0]
      if len(hit):
        out_len[r] = lengths[r] + hit[0] + 1
  return {"tokens": buf, "lengths": out_len, "steps": int(steps)}
