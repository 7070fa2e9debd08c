"""Shared fixtures of the control tests."""
import itertools

import pytest

from mtl.control.search import Measurement
from mtl.control.widths import WidthConfig


@pytest.fixture
def synthetic_table():
  """8 configs of tasks ('a', 'b'); MACs = 100 e + 10 (h_a + h_b); metric_t = e + 0.2 h_t."""
  rows = []
  for e, ha, hb in itertools.product((0.5, 1.0), repeat=3):
    rows.append(Measurement(WidthConfig.create(e, {"a": ha, "b": hb}), int(100 * e + 10 * (ha + hb)),
                            {"a": e + 0.2 * ha, "b": e + 0.2 * hb}))
  return rows
