"""MQAR recall (Zoology) for softmax vs lightning attention.

arg: 'mixer=softmax|lightning,data=mqar-L-K-V' (default data 'mqar': L=64, K=8, V=128), optional
'steps=', 'lr=', 'dim='. Compare recall with token_accuracy (only answer positions have targets).
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, data="mqar", steps=3000, lr=1e-3, dim=64, mixer="lightning")
  c.dataset.name = args.data
  c.num_steps = args.steps
  c.batch_size = 64
  c.eval_batch_size = 256
  c.log_every = 100
  c.checkpoint.every_steps = 1000
  c.optimizer.learning_rate = args.lr
  c.optimizer.warmup_steps = min(100, c.num_steps // 10)
  c.checkpoint.every_steps = min(c.checkpoint.every_steps, c.num_steps)
  vocab = 128 if c.dataset.name == "mqar" else int(c.dataset.name.split("-")[3])
  c.model.name = "lm"
  c.model.lm = ml_collections.ConfigDict(dict(
      vocab_size=vocab, dim=args.dim, depth=2, num_heads=2, mlp_ratio=2.0,
      mixer=args.mixer, block_size=16, rope=True))
  return c
