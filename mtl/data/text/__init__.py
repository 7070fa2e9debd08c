"""Text data: GCIDE dictionary tasks, Python stdlib source LM, MQAR; byte tokenizer."""
from mtl.data.text.datasets import get_info, make_loader  # noqa: F401
