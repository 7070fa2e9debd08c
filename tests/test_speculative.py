import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mtl import decode, speculative
from mtl.models.lm import DecoderLM

V = 16


def _model(mixer, v=32):
  m = DecoderLM(v, 32, 1, 4, mixer=mixer, block_size=4)
  params = m.init(jax.random.PRNGKey(3), jnp.zeros((1, 4), jnp.int32))["params"]
  return m, params


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
@pytest.mark.parametrize("width", [0.5, 1.0])
def test_greedy_speculative_equals_greedy(mixer, width):
  m, params = _model(mixer)
  prompts = np.array([[1, 2, 3], [4, 5, 6]])
  plain = decode.generate(m, params, prompts, max_new_tokens=9)
  spec = speculative.speculative_generate(m, params, prompts, max_new_tokens=9,
                                          draft_width=width, gamma=3)
  np.testing.assert_array_equal(spec["tokens"], plain["tokens"])
  if width == 1.0:  # the draft is the target: every proposal is accepted
    assert spec["stats"]["acceptance_rate"] == 1.0
    assert spec["stats"]["rounds"] == 3  # 9 tokens, 4 per round (ceil(8 / 4) + 1)


def test_sampling_distribution_is_the_targets():
  # Marginals of the first 3 sampled tokens over 3000 rows vs the exact target
  # distribution (enumerated); gamma=2 exercises accept, reject and bonus.
  m, params = _model("lightning", v=V)
  temp, n, prompt = 0.5, 3000, [1, 2]
  out = speculative.speculative_generate(
      m, params, np.tile(prompt, (n, 1)), max_new_tokens=3, draft_width=0.25,
      gamma=2, rng=jax.random.PRNGKey(11), temperature=temp)
  rate = out["stats"]["acceptance_rate"]
  assert 0.05 < rate < 0.95, rate  # both branches really happen

  def dist(model, p):
    fwd = jax.jit(lambda t: jax.nn.softmax(model.apply({"params": p}, t, method=model.logits)[:, -1] / temp))
    p1 = fwd(jnp.array([prompt]))[0]
    seq2 = jnp.array([prompt + [a] for a in range(V)])
    p2 = fwd(seq2)                                    # [V(a), V(b)]
    seq3 = jnp.array([prompt + [a, c] for a in range(V) for c in range(V)])
    p3 = fwd(seq3).reshape(V, V, V)
    joint2 = p1[:, None] * p2
    return [p1, joint2.sum(0), (joint2[..., None] * p3).sum((0, 1))]

  exact = dist(m, params)
  draft = m.slim(0.25)
  draft_exact = dist(draft, speculative.slice_params(params, m, 0.25))
  def pvalue(counts, probs, keep):
    probs = np.asarray(probs, np.float64)
    obs, exp = counts[keep], probs[keep]
    if (~keep).any():  # pool the rare outcomes into one bin
      obs, exp = np.append(obs, counts[~keep].sum()), np.append(exp, probs[~keep].sum())
    return stats.chisquare(obs, exp / exp.sum() * obs.sum()).pvalue

  for j in range(3):
    counts = np.bincount(out["tokens"][:, 2 + j], minlength=V)
    keep = np.asarray(exact[j]) * n >= 5
    assert pvalue(counts, exact[j], keep) > 1e-3
    # Power check: the same test rejects the draft's own distribution.
    assert pvalue(counts, draft_exact[j], keep) < 1e-3


def test_stop_tokens_and_bad_args():
  m, params = _model("softmax")
  plain = decode.generate(m, params, np.array([[1, 2, 3]]), max_new_tokens=8)
  stop = int(plain["tokens"][0, 5])
  spec = speculative.speculative_generate(m, params, np.array([[1, 2, 3]]), max_new_tokens=8,
                                          gamma=2, stop_tokens=(stop,), pad_token=31)
  ref = decode.generate(m, params, np.array([[1, 2, 3]]), max_new_tokens=8,
                        stop_tokens=(stop,), pad_token=31)
  np.testing.assert_array_equal(spec["tokens"], ref["tokens"])
  assert spec["lengths"][0] == ref["lengths"][0]
  with pytest.raises(ValueError, match="gamma"):
    speculative.speculative_generate(m, params, np.array([[1]]), max_new_tokens=2, gamma=0)
