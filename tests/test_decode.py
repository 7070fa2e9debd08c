import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtl import decode
from mtl.models.lm import DecoderLM

V = 32


def _model(mixer, impl="jnp"):
  m = DecoderLM(V, 16, 1, 2, mixer=mixer, impl=impl, block_size=4)
  params = m.init(jax.random.PRNGKey(3), jnp.zeros((1, 4), jnp.int32))["params"]
  return m, params


def _reference(m, params, prompt, n_new, temperature=0.0, top_k=0, rng=None):
  """Plain loop: full recompute of the logits at every position."""
  seq = list(prompt)
  total = len(seq) + n_new
  # One fixed padded shape (causal: padding after position t cannot change logits at t).
  fwd = jax.jit(lambda t: m.apply({"params": params}, t, method=m.logits))
  for _ in range(n_new):
    logits = fwd(jnp.asarray([seq + [0] * (total - len(seq))]))[:, len(seq) - 1]
    t = len(seq)
    seq.append(int(decode.sample_logits(logits, jax.random.fold_in(rng, t), temperature, top_k)[0])
               if temperature else int(jnp.argmax(logits[0])))
  return seq


@pytest.mark.parametrize("mixer,impl", [("softmax", "jnp"), ("lightning", "jnp"),
                                        ("lightning", "pallas")])
def test_greedy_ragged_prompts_match_full_recompute(mixer, impl):
  m, params = _model(mixer, impl)
  prompts = np.array([[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]])
  out = decode.generate(m, params, prompts, [5, 2], max_new_tokens=4)
  assert out["tokens"].shape == (2, 9)
  mj = m.clone(impl="jnp")
  for r, n in ((0, 5), (1, 2)):
    want = _reference(mj, params, prompts[r, :n], 9 - n)
    np.testing.assert_array_equal(out["tokens"][r, :9], want)


def test_sampling_top_k_matches_reference_with_same_keys():
  m, params = _model("lightning")
  rng = jax.random.PRNGKey(7)
  out = decode.generate(m, params, np.array([[1, 2, 3]]), max_new_tokens=5, rng=rng,
                        temperature=1.0, top_k=5)
  want = _reference(m, params, [1, 2, 3], 5, temperature=1.0, top_k=5, rng=rng)
  np.testing.assert_array_equal(out["tokens"][0], want)


def test_top_k_and_temperature_distribution():
  logits = jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.4]]))
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  draw = jax.vmap(lambda k: decode.sample_logits(logits, k, 1.0, 2)[0])(keys)
  freq = np.bincount(np.asarray(draw), minlength=4) / 4000
  np.testing.assert_allclose(freq, [0, 0, 3 / 7, 4 / 7], atol=0.03)
  assert int(decode.sample_logits(logits, keys[0], 0.0)[0]) == 3
  with pytest.raises(ValueError):
    decode.sample_logits(logits, keys[0], -1.0)


def test_stop_tokens_end_rows_and_loop():
  m, params = _model("softmax")
  free = decode.generate(m, params, np.array([[1, 2], [3, 4]]), max_new_tokens=6)
  stop = int(free["tokens"][0, 3])  # row 0's second generated token
  out = decode.generate(m, params, np.array([[1, 2], [3, 4]]), max_new_tokens=6,
                        stop_tokens=(stop,), pad_token=31)
  row = out["tokens"][0]
  first = 2 + int(np.nonzero(free["tokens"][0, 2:] == stop)[0][0])
  np.testing.assert_array_equal(row[:first + 1], free["tokens"][0, :first + 1])
  assert (row[first + 1:] == 31).all() and out["lengths"][0] == first + 1


def test_bad_arguments():
  m, params = _model("softmax")
  with pytest.raises(ValueError, match="prompt_lengths"):
    decode.generate(m, params, np.ones((2, 3), int), [0, 3], max_new_tokens=2)
  with pytest.raises(ValueError, match="rng"):
    decode.generate(m, params, np.ones((1, 3), int), max_new_tokens=2, temperature=1.0)
