"""Feature maps phi for linear attention: softmax(q.k) is replaced by phi(q).phi(k).

taylor_exp (Based, Arora et al. 2024): phi(x) = [1, x / d^(1/4), vec(x x^T) / (sqrt(2) sqrt(d))] for x [..., d],
  so phi(q).phi(k) = 1 + s + s^2 / 2 with s = q.k / sqrt(d): the 2nd-order Taylor expansion of exp(s), always
  >= 1/2 (the normaliser never vanishes). Feature size 1 + d + d^2.
elu1: phi(x) = elu(x) + 1 (Katharopoulos et al. 2020). identity: phi(x) = x (may give non-positive scores).
`kernel(name, q, k)` is phi(q).phi(k) computed without the expansion where a closed form exists.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

FEATURE_MAPS = ("taylor_exp", "elu1", "identity")


def _check(name: str) -> None:
  if name not in FEATURE_MAPS:
    raise ValueError(f"unknown feature map {name!r}; expected one of {FEATURE_MAPS}")


def feature_size(name: str, dim: int) -> int:
  """Size of phi(x) for x of size dim."""
  _check(name)
  return 1 + dim + dim * dim if name == "taylor_exp" else dim


def feature_map(name: str, x: jax.Array) -> jax.Array:
  """phi(x): x [..., d] -> [..., feature_size(name, d)] (float32 for taylor_exp and elu1)."""
  _check(name)
  if name == "identity":
    return x
  x = x.astype(jnp.float32)
  if name == "elu1":
    return jax.nn.elu(x) + 1.0
  d = x.shape[-1]
  x2 = (x[..., :, None] * x[..., None, :]).reshape(*x.shape[:-1], d * d) / (math.sqrt(2.0) * math.sqrt(d))
  return jnp.concatenate([jnp.ones_like(x[..., :1]), x / d ** 0.25, x2], axis=-1)


def kernel(name: str, q: jax.Array, k: jax.Array, equation: str) -> jax.Array:
  """phi(q).phi(k) contracted over the feature axis by `equation` (an einsum of q and k's features, e.g.
  'bqhd,bkhd->bhqk'); taylor_exp uses the closed form 1 + s + s^2/2 with s = q.k / sqrt(d)."""
  _check(name)
  if name == "taylor_exp":
    s = jnp.einsum(equation, q.astype(jnp.float32), k.astype(jnp.float32)) / math.sqrt(q.shape[-1])
    return 1.0 + s + 0.5 * s * s
  return jnp.einsum(equation, feature_map(name, q), feature_map(name, k))
