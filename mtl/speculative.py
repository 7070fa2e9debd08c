"""Speculative decoding with a nested draft: the slim-width sub-network of the same LM (as in S2D).

Each round the draft (`model.slim(draft_width)` with `slice_params`, sharing
the leading weights of the target) proposes `gamma` tokens one by one; the
target scores all of them in one parallel `extend`; proposals are accepted by
the rule of Leviathan et al. / Chen et al. (2023):
  accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), stop at the first
  rejection and sample the replacement from norm(max(p - q, 0)); if all gamma
  are accepted, sample a bonus token from p_{gamma}.
This leaves the output distribution exactly that of sampling from the target
(p, q are the temperature / top-k processed distributions). With temperature
0 it accepts d_i iff it is the target's argmax, so the output equals plain
greedy decoding. Both caches then keep the accepted prefix (`commit`); the
draft re-reads the accepted tokens with one parallel `extend`, which also
resyncs lightning recurrent states that cannot be rolled back.

Rows run at their own positions. Round keys: fold_in(rng, round); draft
draws use fold_in(key, i), acceptance uniforms fold_in(key, gamma) and the
replacement fold_in(key, gamma + 1).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtl.decode import process_logits, round_up
from mtl.models.lm import DecoderLM, slice_params


def _probs(logits, temperature, top_k):
  if temperature == 0.0:
    return jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])
  return jax.nn.softmax(process_logits(logits, temperature, top_k), -1)


@functools.partial(jax.jit, static_argnames=(
    "model", "draft", "gamma", "total_len", "cache_len", "temperature",
    "top_k", "stop_tokens", "pad_token"))
def _speculative(model, draft, params, draft_params, prompts, rng, *, gamma,
                 total_len, cache_len, temperature, top_k, stop_tokens,
                 pad_token):
  b, p = prompts.shape
  tgt = lambda f, *a: model.apply({"params": params}, *a, method=f)
  drf = lambda f, *a: draft.apply({"params": draft_params}, *a, method=f)
  tcache = tgt(DecoderLM.init_cache, b, cache_len)
  dcache = drf(DecoderLM.init_cache, b, cache_len)
  prompts = prompts.astype(jnp.int32)
  if p > 1:
    _, tcache = tgt(DecoderLM.prefill, prompts[:, :p - 1], tcache)
    _, dcache = drf(DecoderLM.prefill, prompts[:, :p - 1], dcache)
  buf = jnp.full((b, total_len + gamma + 1), pad_token, jnp.int32)
  buf = buf.at[:, :p].set(prompts)
  stops = jnp.asarray(stop_tokens or (-1,), jnp.int32)
  idx = jnp.arange(gamma + 1)

  def cond(c):
    return ~jnp.all(c[5])

  def body(c):
    rnd, buf, tcache, dcache, last, done, pos, stats = c
    key = jax.random.fold_in(rng, rnd)
    # 1. Draft proposes gamma tokens.
    x, dc, drafts, qs = last, dcache, [], []
    for i in range(gamma):
      ql, dc = drf(DecoderLM.step, x, dc)
      qs.append(_probs(ql, temperature, top_k))
      x = (jnp.argmax(ql, -1) if temperature == 0.0 else jax.random.categorical(
          jax.random.fold_in(key, i), process_logits(ql, temperature, top_k))
           ).astype(jnp.int32)
      drafts.append(x)
    d = jnp.stack(drafts, 1)                                  # [B, gamma]
    q = jnp.stack(qs + [jnp.zeros_like(qs[0])], 1)            # [B, gamma+1, V]
    chunk = jnp.concatenate([last[:, None], d], 1)            # [B, gamma+1]
    # 2. Target scores the chunk in parallel.
    tl, tpend = tgt(DecoderLM.extend, chunk, tcache)
    pr = _probs(tl, temperature, top_k)                       # [B, gamma+1, V]
    # 3. Accept / reject.
    p_d = jnp.take_along_axis(pr[:, :gamma], d[..., None], -1)[..., 0]
    q_d = jnp.take_along_axis(q[:, :gamma], d[..., None], -1)[..., 0]
    if temperature == 0.0:
      ok = p_d > 0.5
    else:
      u = jax.random.uniform(jax.random.fold_in(key, gamma), (b, gamma))
      ok = u * q_d < p_d
    n_acc = jnp.sum(jnp.cumprod(ok.astype(jnp.int32), 1), 1)  # [B]
    p_n = jnp.take_along_axis(pr, n_acc[:, None, None], 1)[:, 0]
    q_n = jnp.take_along_axis(q, n_acc[:, None, None], 1)[:, 0]
    if temperature == 0.0:
      nxt = jnp.argmax(p_n, -1).astype(jnp.int32)
    else:
      resid = jnp.maximum(p_n - q_n, 0.0)
      resid = jnp.where(jnp.sum(resid, -1, keepdims=True) > 0, resid, p_n)
      nxt = jax.random.categorical(jax.random.fold_in(key, gamma + 1),
                                   jnp.log(resid)).astype(jnp.int32)
    # 4. Write accepted + next; done rows stay frozen.
    n_new = jnp.where(done, 0, n_acc + 1)
    d_pad = jnp.concatenate([d, jnp.full((b, 1), pad_token, jnp.int32)], 1)
    new = jnp.where(idx < n_acc[:, None], d_pad,
                    jnp.where(idx == n_acc[:, None], nxt[:, None], pad_token))
    new = jnp.where(done[:, None], jax.vmap(
        lambda r, s: jax.lax.dynamic_slice(r, (s,), (gamma + 1,)))(buf, pos + 1),
                    new)
    buf = jax.vmap(lambda r, v, s: jax.lax.dynamic_update_slice(r, v, (s,)))(
        buf, new, pos + 1)
    hit_stop = jnp.any(jnp.isin(new, stops) & (idx < n_new[:, None]), 1)
    # 5. Keep the accepted prefix [last, d_1..d_nacc] in both caches.
    tcache = tgt(DecoderLM.commit, tcache, tpend, n_new)
    _, dpend = drf(DecoderLM.extend, chunk, dcache)
    dcache = drf(DecoderLM.commit, dcache, dpend, n_new)
    active = ~done
    stats = {"rounds": stats["rounds"] + 1,
             "row_rounds": stats["row_rounds"] + jnp.sum(active),
             "accepted": stats["accepted"] + jnp.sum(jnp.where(active, n_acc, 0))}
    pos = pos + n_new
    last = jnp.where(done, last, nxt)
    done = done | hit_stop | (pos + 1 >= total_len)
    return rnd + 1, buf, tcache, dcache, last, done, pos, stats

  zero = jnp.int32(0)
  init = (zero, buf, tcache, dcache, prompts[:, -1], jnp.zeros((b,), bool),
          jnp.full((b,), p - 1, jnp.int32),
          {"rounds": zero, "row_rounds": zero, "accepted": zero})
  out = jax.lax.while_loop(cond, body, init)
  return out[1][:, :total_len], out[7]


def speculative_generate(model: DecoderLM, params: Any, prompts: np.ndarray, *,
                         max_new_tokens: int, draft_width: float = 0.5,
                         gamma: int = 4, rng: jax.Array | None = None,
                         temperature: float = 0.0, top_k: int = 0,
                         stop_tokens: Sequence[int] = (), pad_token: int = 0,
                         cache_multiple: int = 16) -> dict[str, Any]:
  """Speculative decoding of equal-length prompts int [B, P] with the slim draft.

  Returns tokens int32 [B, P + max_new_tokens] (pad_token after a stop token),
  lengths [B], and stats: rounds, acceptance_rate (accepted draft tokens /
  proposed, over active rows) and tokens_per_round (per row, accepted + 1).
  """
  prompts = np.asarray(prompts)
  if prompts.ndim != 2 or prompts.shape[1] < 1:
    raise ValueError(f"prompts must be int [B, P], got {prompts.shape}")
  if gamma < 1 or max_new_tokens < 1:
    raise ValueError(f"gamma and max_new_tokens must be >= 1, got {gamma}, {max_new_tokens}")
  if temperature > 0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng key")
  if temperature < 0 or top_k < 0:
    raise ValueError(f"temperature and top_k must be >= 0, got {temperature}, {top_k}")
  draft = model.slim(draft_width)
  dparams = slice_params(params, model, draft_width)
  b, p = prompts.shape
  total = p + max_new_tokens
  toks, st = _speculative(
      model, draft, params, dparams, jnp.asarray(prompts),
      jax.random.PRNGKey(0) if rng is None else rng, gamma=int(gamma),
      total_len=total, cache_len=round_up(total + gamma + 1, cache_multiple),
      temperature=float(temperature), top_k=int(top_k),
      stop_tokens=tuple(int(s) for s in stop_tokens), pad_token=int(pad_token))
  toks = np.array(toks)
  lengths = np.full((b,), total)
  for r in range(b):
    hit = np.nonzero(np.isin(toks[r, p:], list(stop_tokens)))[0] if stop_tokens else []
    if len(hit):
      lengths[r] = p + hit[0] + 1
      toks[r, lengths[r]:] = pad_token
  rr = max(int(st["row_rounds"]), 1)
  return {"tokens": toks, "lengths": lengths,
          "stats": {"rounds": int(st["rounds"]),
                    "acceptance_rate": int(st["accepted"]) / (rr * gamma),
                    "tokens_per_round": (int(st["accepted"]) + rr) / rr}}
