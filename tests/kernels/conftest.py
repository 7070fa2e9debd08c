"""Kernel test modes: one test body runs every kernel variant in the modes this backend offers.

Interpret mode everywhere (Pallas interpret for the Triton kernels, TPU interpret mode for the Mosaic ones, so
both run on CPU CI), plus the compiled kernel on its own backend (Triton on GPU, Mosaic on TPU). Tests take the
fixtures `lightning_case` = (impl, interpret) of kernels.lightning_attention and `decode_case` = (impl,
interpret) of kernels.softmax_decode / kernels.linear_decode.
"""
import jax

_BACKEND = jax.default_backend()
_COMPILED = {"gpu": ("triton",), "tpu": ("mosaic",)}.get(_BACKEND, ())


def _cases(impls):
  cases = [(impl, True) for impl in impls]
  cases += [(impl, False) for impl in impls if impl.split("_")[0] in _COMPILED]
  return cases


def _id(case):
  impl, interpret = case
  return f"{impl}-{'interpret' if interpret else 'compiled'}"


LIGHTNING_CASES = _cases(("triton_serial", "triton_chunked", "mosaic"))
DECODE_CASES = _cases(("triton", "mosaic"))


def pytest_generate_tests(metafunc):
  for name, cases in (("lightning_case", LIGHTNING_CASES), ("decode_case", DECODE_CASES)):
    if name in metafunc.fixturenames:
      metafunc.parametrize(name, cases, ids=[_id(c) for c in cases])
