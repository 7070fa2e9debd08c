"""Random arrays and parameters for tests, drawn with numpy (nothing compiles)."""
import jax
import jax.numpy as jnp
import numpy as np


def randn(seed, shape):
  """float32 standard normals from numpy (jax.random would compile threefry for every shape)."""
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def random_params(module, *args, seed=0, **kwargs):
  """Parameters of `module.init(key, *args, **kwargs)` filled from numpy (shapes by eval_shape: nothing
  compiles; the jitted init of these tiny models costs more than the tests themselves)."""
  shapes = jax.eval_shape(lambda r: module.init(r, *args, **kwargs)["params"], jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = str(getattr(path[-1], "key", ""))
    fan_in = s.shape[-2] if len(s.shape) >= 2 else 1
    v = rng.normal(size=s.shape) / np.sqrt(fan_in)
    return jnp.asarray(1.0 + 0.1 * v if name == "scale" else v, s.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)
