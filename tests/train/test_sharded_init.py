"""The train state is born sharded (no device ever holds more than its share during init), logical axis names
place parameters and their Adam moments, restore works onto another mesh, and a width slice of a sharded
dimension computes what the unsharded model computes."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from configs import common
from mtl import sharding
from mtl.testing.train_synthetic import synthetic_config
from mtl.train import loop


def _fsdp_config(num_steps=2):
  c = synthetic_config(num_steps, every_steps=100)
  c.mesh = {"fsdp": -1}
  c.model.encoder.stage_channels = (64, 128)
  c.model.head.hidden_dim = 128
  return common.apply_sharding_preset(c, "fsdp")


def _nbytes(x) -> int:
  return int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize


def test_init_is_born_sharded_params_and_moments_hold_one_eighth():
  config = _fsdp_config()
  exp = loop.build_experiment(config)
  total = sum(_nbytes(x) for x in jax.tree.leaves(exp.state))
  shard_bytes = sum(_nbytes(x.addressable_shards[0].data) for x in jax.tree.leaves(exp.state))
  assert shard_bytes < 1.05 * total / 8, (shard_bytes, total)  # only scalars and 3-logit heads are replicated
  kernels = [(sharding.path_str(p), x) for p, x in jax.tree_util.tree_flatten_with_path(exp.state)[0]
             if sharding.path_str(p).endswith("kernel")]
  assert {k.split("/")[0] for k, _ in kernels} == {"params", "opt_state"}
  for name, x in kernels:
    assert "fsdp" in x.sharding.spec, (name, x.shape, x.sharding.spec)  # every kernel has a dim divisible by 8
    assert x.addressable_shards[0].data.size == x.size // 8
  # The compiled init writes only each device's shard, and its scratch never holds the whole state.
  init = loop.init_state_fn(exp.model, exp.tx, exp.method, exp.info.input_shape, config.seed)
  stats = jax.jit(lambda: nn.meta.unbox(init()), out_shardings=exp.state_shardings).lower().compile()
  stats = stats.memory_analysis()
  assert stats.output_size_in_bytes <= 1.05 * total / 8 and stats.temp_size_in_bytes < total / 4, (stats, total)
  # The same init without out_shardings (what loop did before) materialises the whole state on one device.
  whole = jax.jit(lambda: nn.meta.unbox(init())).lower().compile().memory_analysis()
  assert whole.output_size_in_bytes >= total


def test_logical_names_map_through_rules():
  mesh = sharding.make_mesh({"fsdp": 2, "tensor": 4})
  boxed = {"k": nn.Partitioned(jax.ShapeDtypeStruct((16, 12), jnp.float32), ("embed", "mlp")),
           "odd": nn.Partitioned(jax.ShapeDtypeStruct((3, 8), jnp.float32), ("mlp", "embed")),
           "plain": jax.ShapeDtypeStruct((8, 8), jnp.float32)}
  sh = sharding.state_shardings(boxed, mesh, (("embed", "fsdp"), ("mlp", "tensor")), ((r"plain", "tensor"),))
  assert sh["k"].spec == P("fsdp", "tensor")
  assert sh["odd"].spec == P(None, "fsdp")  # 3 does not divide by 4 tensor devices: that dim is replicated
  assert sh["plain"].spec == P("tensor", None)  # no logical names: the regex fallback
  # A mesh axis is used once per parameter, so two names mapped to it shard only the first that divides.
  sh = sharding.state_shardings(boxed, mesh, (("embed", "fsdp"), ("mlp", "fsdp")))
  assert sh["k"].spec == P("fsdp", None)


def test_restore_onto_another_mesh(tmp_path):
  config = _fsdp_config(num_steps=2)
  loop.train_and_evaluate(config, str(tmp_path), progress=False)
  exp8, state8, _ = loop.restore_experiment(str(tmp_path))
  other = sharding.make_mesh({"data": 2, "fsdp": 4})
  exp4, state4, step = loop.restore_experiment(str(tmp_path), mesh=other)
  assert step == 2
  for a, b in zip(jax.tree.leaves(state8.params), jax.tree.leaves(state4.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  kernel = state4.params["encoder"]["stage1_conv1"]["kernel"]
  assert kernel.sharding.spec == P(None, None, "fsdp", None) and kernel.addressable_shards[0].data.shape[2] == 32


def test_width_slice_of_a_sharded_dimension_matches_unsharded():
  """A slimmable layer at width 0.25 reads the leading quarter of a kernel whose output channels are split over
  8 'tensor' devices, i.e. the shards of 2 devices: XLA moves that block where the computation runs, so the
  result equals the unsharded model's (only communication differs)."""
  config = synthetic_config(1)
  config.mesh = {"tensor": -1}
  config.model.encoder.stage_channels = (64, 128)
  config.model.head.hidden_dim = 128
  config.model.encoder.widths = config.model.head.widths = (0.25, 1.0)
  common.apply_sharding_preset(config, "tensor")
  exp = loop.build_experiment(config)
  kernel = exp.state.params["encoder"]["stage1_conv1"]["kernel"]
  assert kernel.sharding.spec == P(None, None, None, "tensor")
  x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)
  kw = dict(encoder_width=0.25, head_widths={"even": 0.25, "odd": 0.25})
  apply = lambda p, x: exp.model.apply({"params": p}, x, **kw)
  sharded = jax.jit(apply)(exp.state.params, x)
  host = jax.device_get(exp.state.params)
  one = jax.devices()[0]
  plain = jax.jit(apply)(jax.device_put(host, one), jax.device_put(x, one))
  for t in ("even", "odd"):
    np.testing.assert_allclose(np.asarray(sharded[t]), np.asarray(plain[t]), rtol=1e-5, atol=1e-6)
  assert isinstance(exp.state_shardings.params["encoder"]["stage1_conv1"]["kernel"], NamedSharding)
