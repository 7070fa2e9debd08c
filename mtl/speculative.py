"""Speculative decoding with a nested draft: the slim-width sub-network of the same LM (as in S2D).

The draft (`model.slim(draft_width)` with `slice_params`, sharing the leading weights of the target)
proposes `gamma` tokens; the target scores all of them in one parallel `extend` over gamma + 1 tokens;
proposals are accepted by the rule of Leviathan et al. / Chen et al. (2023):
  accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), stop at the first rejection and sample the
  replacement from norm(max(p - q, 0)); if all gamma are accepted, sample a bonus token from p_{gamma}.
This leaves the output distribution exactly that of sampling from the target (p, q are the temperature /
top-k processed distributions). With temperature 0 it accepts d_i iff it is the target's argmax, so the
output equals plain greedy decoding.

The whole generation is ONE jitted `lax.while_loop` (one iteration = one round; the gamma - 1 draft steps
are a `lax.scan`), with no host sync until it ends. Rows keep their own positions (`pos`, and per-row cache
lengths), so rows of a batch accept different numbers of tokens per round; finished rows stay frozen.

Cache bookkeeping per round, for row b with `last` = the newest token (not yet read by the target):
  * target: `extend([last, d_1..d_gamma])`, then `commit` of the accepted prefix (n_acc + 1 tokens).
  * draft: no re-read of the accepted tokens. The draft state after each of its own steps is kept
    (only the small leaves: recurrent states, positions and KV-cache lengths; the KV buffers are shared,
    entries past a row's length are never read) and row b rewinds to the step that matches its accepted
    prefix. When all gamma proposals are accepted the draft never read d_gamma, so the row is marked
    `lag`: the next round starts with a 2-token draft `extend([d_gamma, last])` instead of reading `last`
    alone (rows that do not lag read `[last, last]` and commit only the first). Each round therefore costs
    gamma draft passes (one 2-token extend + gamma - 1 steps) and one target pass.

Round keys: fold_in(rng, round); draft draws use fold_in(key, i) (i = 0..gamma-1), acceptance uniforms
fold_in(key, gamma) and the replacement fold_in(key, gamma + 1).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtl.decode import process_logits, round_up
from mtl.models.lm import DecoderLM, slice_params


def _is_kv_buffer(path, leaf) -> bool:
  """A softmax KV-cache buffer ('k' / 'v' [B, Hkv, Lmax, Dh]): shared across the draft's steps, not snapshot."""
  name = getattr(path[-1], "key", None) if path else None
  return name in ("k", "v") and getattr(leaf, "ndim", 0) == 4


def _small(cache):
  """The cache with its KV buffers replaced by scalars: what a rewind needs per step."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros((), x.dtype) if _is_kv_buffer(p, x) else x, cache)


def _rewind(final, snaps, k, keep_old, old):
  """Per row b: the final cache's KV buffers with the small leaves of snapshot k[b] (snaps: leaves [S, B, ...]);
  rows with keep_old[b] get `old`'s small leaves back."""
  def pick(path, f, s, o):
    if _is_kv_buffer(path, f):
      return f
    chosen = jnp.take_along_axis(s, k.reshape((1, -1) + (1,) * (s.ndim - 2)), 0)[0]
    return jnp.where(keep_old.reshape((-1,) + (1,) * (o.ndim - 1)), o, chosen.astype(o.dtype))
  return jax.tree_util.tree_map_with_path(pick, final, snaps, old)


def _draw(logits, key, temperature, top_k):
  """(token int32 [B], processed probabilities [B, V] or None for greedy) of logits [B, V]."""
  if temperature == 0.0:
    return jnp.argmax(logits, -1).astype(jnp.int32), None
  lg = process_logits(logits, temperature, top_k)
  return jax.random.categorical(key, lg).astype(jnp.int32), jax.nn.softmax(lg, -1)


@functools.partial(jax.jit, static_argnames=(
    "model", "draft", "draft_width", "gamma", "total_len", "cache_len", "temperature", "top_k", "stop_tokens",
    "pad_token"))
def _speculative(model, draft, params, draft_params, prompts, rng, *, draft_width, gamma, total_len, cache_len,
                 temperature, top_k, stop_tokens, pad_token):
  b, p = prompts.shape
  if draft_params is None:  # the nested draft: sliced here, once per call (eager slicing cost ~17 ms per call)
    draft_params = slice_params(params, model, draft_width)
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
  rows = jnp.arange(b)
  greedy = temperature == 0.0

  def cond(c):
    return ~jnp.all(c["done"])

  def body(c):
    pos, last, lag, done = c["pos"], c["last"], c["lag"], c["done"]
    key = jax.random.fold_in(rng, c["round"])
    # 1. Draft: catch up (lagging rows read d_gamma of the last round first), then propose gamma tokens.
    def catch_up():   # some row lags: read [d_gamma, last] there, [last] elsewhere (a 2-token extend)
      prev = c["buf"][rows, jnp.maximum(pos - 1, 0)]
      pair = jnp.where(lag[:, None], jnp.stack([prev, last], 1), jnp.stack([last, last], 1))
      l2, dpend = drf(DecoderLM.extend, pair, c["dcache"])
      return l2[rows, lag.astype(jnp.int32)], drf(DecoderLM.commit, c["dcache"], dpend, 1 + lag.astype(jnp.int32))

    def one_step():   # no row lags: one draft step on `last` (a 1-row matmul, not a 2-row one)
      return drf(DecoderLM.step, last, c["dcache"])

    l1, dcache0 = jax.lax.cond(jnp.any(lag & ~done), catch_up, one_step)
    d1, q1 = _draw(l1, jax.random.fold_in(key, 0), temperature, top_k)

    def draft_step(carry, i):
      x, cache = carry
      logits, cache = drf(DecoderLM.step, x, cache)
      y, q = _draw(logits, jax.random.fold_in(key, i), temperature, top_k)
      return (y, cache), (y, q, _small(cache))

    (_, dlast), (ds, qs, snaps) = jax.lax.scan(draft_step, (d1, dcache0), jnp.arange(1, gamma))
    d = jnp.concatenate([d1[:, None], ds.T], 1)                        # [B, gamma]
    snaps = jax.tree_util.tree_map(lambda s0, s: jnp.concatenate([s0[None], s], 0), _small(dcache0), snaps)
    # 2. Target scores [last, d_1..d_gamma] in parallel.
    chunk = jnp.concatenate([last[:, None], d], 1)                     # [B, gamma + 1]
    tl, tpend = tgt(DecoderLM.extend, chunk, c["tcache"])              # [B, gamma + 1, V]
    # 3. Accept / reject.
    if greedy:
      t_arg = jnp.argmax(tl, -1).astype(jnp.int32)                     # [B, gamma + 1]
      ok = d == t_arg[:, :gamma]
      n_acc = jnp.sum(jnp.cumprod(ok.astype(jnp.int32), 1), 1)        # [B]
      nxt = t_arg[rows, n_acc]
    else:
      q = jnp.concatenate([q1[:, None], jnp.swapaxes(qs, 0, 1), jnp.zeros_like(q1)[:, None]], 1)
      pr = jax.nn.softmax(process_logits(tl, temperature, top_k), -1)  # [B, gamma + 1, V]
      p_d = jnp.take_along_axis(pr[:, :gamma], d[..., None], -1)[..., 0]
      q_d = jnp.take_along_axis(q[:, :gamma], d[..., None], -1)[..., 0]
      u = jax.random.uniform(jax.random.fold_in(key, gamma), (b, gamma))
      n_acc = jnp.sum(jnp.cumprod((u * q_d < p_d).astype(jnp.int32), 1), 1)
      p_n, q_n = pr[rows, n_acc], q[rows, n_acc]
      resid = jnp.maximum(p_n - q_n, 0.0)
      resid = jnp.where(jnp.sum(resid, -1, keepdims=True) > 0, resid, p_n)
      nxt = jax.random.categorical(jax.random.fold_in(key, gamma + 1), jnp.log(resid)).astype(jnp.int32)
    # 4. Write the accepted drafts + next token; done rows stay frozen.
    n_new = jnp.where(done, 0, n_acc + 1)
    d_pad = jnp.concatenate([d, jnp.full((b, 1), pad_token, jnp.int32)], 1)
    new = jnp.where(idx < n_acc[:, None], d_pad, jnp.where(idx == n_acc[:, None], nxt[:, None], pad_token))
    old = jax.vmap(lambda r, s: jax.lax.dynamic_slice(r, (s,), (gamma + 1,)))(c["buf"], pos + 1)
    new = jnp.where(done[:, None], old, new)
    buf = jax.vmap(lambda r, v, s: jax.lax.dynamic_update_slice(r, v, (s,)))(c["buf"], new, pos + 1)
    hit_stop = jnp.any(jnp.isin(new, stops) & (idx < n_new[:, None]), 1)
    # 5. Caches: target keeps [last, d_1..d_nacc]; the draft rewinds to the step that read d_nacc (or,
    # all accepted, d_{gamma-1} and lags by d_gamma).
    tcache = tgt(DecoderLM.commit, c["tcache"], tpend, n_new)
    new_lag = jnp.where(done, lag, n_acc == gamma)
    dcache = _rewind(dlast, snaps, n_acc - (n_acc == gamma), done, c["dcache"])
    useful = jnp.minimum(n_acc + 1, total_len - 1 - pos)
    active = ~done
    stats = {"rounds": c["stats"]["rounds"] + 1,
             "active_rounds": c["stats"]["active_rounds"] + jnp.sum(active),
             "accepted": c["stats"]["accepted"] + jnp.sum(jnp.where(active, n_acc, 0)),
             "tokens": c["stats"]["tokens"] + jnp.sum(jnp.where(active, useful, 0)),
             "row_accepted": c["stats"]["row_accepted"] + jnp.where(active, n_acc, 0),
             "row_rounds": c["stats"]["row_rounds"] + active.astype(jnp.int32)}
    pos = pos + n_new
    return {"round": c["round"] + 1, "buf": buf, "tcache": tcache, "dcache": dcache, "lag": new_lag,
            "last": jnp.where(done, last, nxt), "done": done | hit_stop | (pos + 1 >= total_len), "pos": pos,
            "stats": stats}

  zero = jnp.int32(0)
  init = {"round": zero, "buf": buf, "tcache": tcache, "dcache": dcache, "lag": jnp.zeros((b,), bool),
          "last": prompts[:, -1], "done": jnp.zeros((b,), bool), "pos": jnp.full((b,), p - 1, jnp.int32),
          "stats": {"rounds": zero, "active_rounds": zero, "accepted": zero, "tokens": zero,
                    "row_accepted": jnp.zeros((b,), jnp.int32), "row_rounds": jnp.zeros((b,), jnp.int32)}}
  out = jax.lax.while_loop(cond, body, init)
  return out["buf"][:, :total_len], out["stats"]


def check_draft_width(model: DecoderLM, draft_width: float) -> DecoderLM:
  """The nested draft `model.slim(draft_width)`, or ValueError when the width is not a nested sub-model."""
  if isinstance(draft_width, bool) or not isinstance(draft_width, (int, float, np.floating)):
    raise ValueError(f"draft_width must be a float in (0, 1], got {draft_width!r}")
  if not 0.0 < float(draft_width) <= 1.0:
    raise ValueError(f"draft_width must be in (0, 1] (a nested slice of the target; 1.0 = the target itself), "
                     f"got {draft_width}")
  return model.slim(float(draft_width))


def speculative_generate(model: DecoderLM, params: Any, prompts: np.ndarray, *,
                         max_new_tokens: int, draft_width: float = 0.5,
                         gamma: int = 4, rng: jax.Array | None = None,
                         temperature: float = 0.0, top_k: int = 0,
                         stop_tokens: Sequence[int] = (), pad_token: int = 0,
                         cache_multiple: int = 16, draft_params: Any = None) -> dict[str, Any]:
  """Speculative decoding of equal-length prompts int [B, P] with the nested draft at `draft_width`.

  Greedy (temperature 0) output equals `mtl.decode.generate`'s greedy output token for token.
  draft_params: parameters of `model.slim(draft_width)` (default: `slice_params(params, model, draft_width)`,
  the weights shared with the target; pass others, e.g. a separately tuned draft, with the same shapes).

  Returns tokens int32 [B, P + max_new_tokens] (pad_token after a stop token), lengths [B], and stats:
  rounds (loop iterations), acceptance_rate (accepted draft tokens / proposed, over active rows),
  tokens_per_round (new tokens kept per row-round: accepted + 1, capped by the buffer end), and per row
  row_accepted (accepted draft tokens) and row_rounds (rounds the row was active).
  """
  if not isinstance(model, DecoderLM):
    raise ValueError(f"speculative decoding needs a DecoderLM (nested drafts), got {type(model).__name__}")
  prompts = np.asarray(prompts)
  if prompts.ndim != 2 or prompts.shape[0] < 1 or prompts.shape[1] < 1:
    raise ValueError(f"prompts must be int [B, P] with B, P >= 1, got shape {prompts.shape}")
  if not np.issubdtype(prompts.dtype, np.integer):
    raise ValueError(f"prompts must be integer token ids, got dtype {prompts.dtype}")
  if prompts.min() < 0 or prompts.max() >= model.vocab_size:
    raise ValueError(f"prompt token ids must lie in [0, vocab_size={model.vocab_size}), got "
                     f"[{prompts.min()}, {prompts.max()}]")
  if isinstance(gamma, bool) or int(gamma) != gamma or gamma < 1:
    raise ValueError(f"gamma (draft tokens per round) must be an integer >= 1, got {gamma!r}")
  if int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
  if temperature < 0 or top_k < 0:
    raise ValueError(f"temperature and top_k must be >= 0, got {temperature}, {top_k}")
  if temperature > 0 and rng is None:
    raise ValueError("sampling with temperature > 0 needs an rng key")
  if temperature == 0 and top_k:
    raise ValueError(f"top_k={top_k} has no effect with greedy decoding (temperature 0)")
  bad = [s for s in stop_tokens if not 0 <= int(s) < model.vocab_size]
  if bad or not 0 <= int(pad_token) < model.vocab_size:
    raise ValueError(f"stop_tokens {list(stop_tokens)} and pad_token {pad_token} must lie in "
                     f"[0, vocab_size={model.vocab_size})")
  draft = check_draft_width(model, draft_width)
  dparams = None
  if draft_params is not None:
    sliced = jax.eval_shape(lambda p: slice_params(p, model, float(draft_width)), params)
    want = jax.tree_util.tree_map(lambda x: x.shape, sliced)
    got = jax.tree_util.tree_map(jnp.shape, draft_params)
    if want != got:
      raise ValueError(f"draft_params do not fit the width-{draft_width} draft: shapes {got} != {want}")
    dparams = draft_params
  b, p = prompts.shape
  total = p + int(max_new_tokens)
  toks, st = _speculative(
      model, draft, params, dparams, jnp.asarray(prompts, jnp.int32),
      jax.random.PRNGKey(0) if rng is None else rng, draft_width=float(draft_width), gamma=int(gamma),
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
  rr = max(int(st["active_rounds"]), 1)
  return {"tokens": toks, "lengths": lengths,
          "stats": {"rounds": int(st["rounds"]),
                    "acceptance_rate": int(st["accepted"]) / (rr * gamma),
                    "tokens_per_round": int(st["tokens"]) / rr,
                    "row_accepted": [int(x) for x in st["row_accepted"]],
                    "row_rounds": [int(x) for x in st["row_rounds"]]}}
