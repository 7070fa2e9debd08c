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


def _greedy_pair(m, params, prompts, new, **kw):
  plain = decode.generate(m, params, prompts, max_new_tokens=new, stop_tokens=kw.get("stop_tokens", ()),
                          pad_token=kw.get("pad_token", 0))
  spec = speculative.speculative_generate(m, params, prompts, max_new_tokens=new, **kw)
  return plain, spec


@pytest.mark.parametrize("mixer,width,gamma,new,prompt_len", [
    ("softmax", 0.5, 3, 9, 3),
    ("softmax", 0.25, 8, 3, 1),     # gamma > remaining tokens; a 1-token prompt (nothing to prefill)
    ("softmax", 0.5, 1, 6, 2),      # gamma 1: the draft only ever runs its 2-token catch-up extend
    ("lightning", 0.5, 3, 9, 3),    # recurrent state: the draft rewinds by per-step snapshots
    ("lightning", 0.25, 8, 5, 2),
])
def test_greedy_speculative_equals_greedy(mixer, width, gamma, new, prompt_len):
  m, params = _model(mixer)
  prompts = np.array([[1, 2, 3], [4, 5, 6], [7, 7, 7]])[:, :prompt_len]
  plain, spec = _greedy_pair(m, params, prompts, new, draft_width=width, gamma=gamma)
  np.testing.assert_array_equal(spec["tokens"], plain["tokens"])
  st = spec["stats"]
  assert 0.0 <= st["acceptance_rate"] <= 1.0
  # Every kept token is counted once: accepted + 1 per round, capped by the buffer.
  assert st["tokens_per_round"] * sum(st["row_rounds"]) == pytest.approx(3 * new)


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_draft_equal_to_target_accepts_everything(mixer):
  m, params = _model(mixer)
  plain, spec = _greedy_pair(m, params, np.array([[1, 2, 3], [4, 5, 6]]), 9, draft_width=1.0, gamma=3)
  np.testing.assert_array_equal(spec["tokens"], plain["tokens"])
  assert spec["stats"]["acceptance_rate"] == 1.0
  # 9 new tokens at 4 per round: rounds write 4 + 4 + 1 (the last round's extras fall off the buffer).
  assert spec["stats"]["rounds"] == 3 and spec["stats"]["row_rounds"] == [3, 3]


@pytest.mark.parametrize("mixer", ["softmax", "lightning"])
def test_batch_rows_accept_all_and_nothing(mixer):
  # A draft that always proposes token Z (head bias +1e3), and a target that, once it has read Z, always
  # predicts Z (its embedding dominates the residual, and only that direction gives Z a high logit). Row 0
  # ends its prompt with Z: every proposal is accepted. Row 1 never sees Z: every proposal is rejected. Both
  # rows must still equal greedy decoding.
  z = 5
  m, params = _model(mixer)
  params = jax.tree_util.tree_map(lambda x: x, params)
  u = jax.random.normal(jax.random.PRNGKey(9), (m.dim,))
  params["embed"]["embedding"] = params["embed"]["embedding"].at[z].set(300.0 * u)
  # Logit of Z: 10 cos(x, u) sqrt(D) - 30: about +27 when the residual is u, below -20 for 99.9% of others.
  params["head"]["kernel"] = params["head"]["kernel"].at[:, z].set(10.0 * u / jnp.linalg.norm(u))
  params["head"]["bias"] = params["head"]["bias"].at[z].set(-30.0)
  dparams = speculative.slice_params(params, m, 1.0)
  dparams["head"]["bias"] = dparams["head"]["bias"].at[z].add(1e3)
  prompts = np.array([[1, 2, z], [8, 9, 10]])
  plain, spec = _greedy_pair(m, params, prompts, 10, draft_width=1.0, gamma=4, draft_params=dparams)
  np.testing.assert_array_equal(spec["tokens"], plain["tokens"])
  assert (plain["tokens"][0, 3:] == z).all() and (plain["tokens"][1, 3:] != z).all()
  st = spec["stats"]
  assert st["row_accepted"][1] == 0 and st["row_rounds"][1] == 10       # one token per round
  assert st["row_accepted"][0] == 8 and st["row_rounds"][0] == 2       # 4 accepted + 1 bonus per round


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


def test_batch_rows_stop_at_different_positions():
  m, params = _model("softmax")
  prompts = np.array([[1, 2, 3], [4, 5, 6], [9, 1, 4]])
  plain = decode.generate(m, params, prompts, max_new_tokens=10)
  stop = int(plain["tokens"][1, 5])          # row 1 stops early; the others maybe later or never
  kw = dict(stop_tokens=(stop,), pad_token=31)
  ref = decode.generate(m, params, prompts, max_new_tokens=10, **kw)
  spec = speculative.speculative_generate(m, params, prompts, max_new_tokens=10, gamma=3, draft_width=0.5, **kw)
  np.testing.assert_array_equal(spec["tokens"], ref["tokens"])
  np.testing.assert_array_equal(spec["lengths"], ref["lengths"])
  assert ref["lengths"][1] == 6


@pytest.mark.parametrize("kwargs,match", [
    (dict(gamma=0), "gamma"),
    (dict(gamma=-2), "gamma"),
    (dict(gamma=2.5), "gamma"),
    (dict(draft_width=0.0), "draft_width"),
    (dict(draft_width=1.5), "draft_width"),
    (dict(draft_width="0.5"), "draft_width"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=0.7), "rng"),
    (dict(top_k=5), "top_k"),
    (dict(stop_tokens=(40,)), "stop_tokens"),
    (dict(prompts=np.array([1, 2, 3])), "prompts"),
    (dict(prompts=np.array([[1.0, 2.0]])), "integer"),
    (dict(prompts=np.array([[1, 32]])), "vocab_size"),
])
def test_bad_arguments_raise_naming_the_problem(kwargs, match):
  m, params = _model("softmax")
  args = dict(prompts=np.array([[1, 2]]), max_new_tokens=4, gamma=2, draft_width=0.5) | kwargs
  with pytest.raises(ValueError, match=match):
    speculative.speculative_generate(m, params, **args)


def test_draft_params_of_the_wrong_width_raise():
  m, params = _model("softmax")
  with pytest.raises(ValueError, match="draft_params"):
    speculative.speculative_generate(m, params, np.array([[1, 2]]), max_new_tokens=3, draft_width=0.5,
                                     draft_params=speculative.slice_params(params, m, 0.25))


@pytest.mark.parametrize("kw", [dict(mixer="linear", short_conv=3, feature_dim=8), dict(mixer="conv", short_conv=3),
                                dict(mixer="softmax", short_conv=3)])
def test_hybrid_block_targets_equal_greedy(kw):
  # HybridBlock states (short-conv window, linear-attention state, KV cache behind a conv) rewind by snapshots.
  m = DecoderLM(32, 32, 1, 4, block_size=4, **kw)
  params = m.init(jax.random.PRNGKey(3), jnp.zeros((1, 4), jnp.int32))["params"]
  prompts = np.array([[1, 2, 3], [4, 5, 6]])
  for width, gamma in ((0.5, 3), (1.0, 2)):
    plain, spec = _greedy_pair(m, params, prompts, 8, draft_width=width, gamma=gamma)
    np.testing.assert_array_equal(spec["tokens"], plain["tokens"])
    if width == 1.0:
      assert spec["stats"]["acceptance_rate"] == 1.0
