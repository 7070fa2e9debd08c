"""mtl: efficient, controllable multi-task learning in JAX."""
