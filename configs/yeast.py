"""Yeast: 103 gene-expression features, 14 binary functional-class tasks (river's yeast.csv.gz)."""
from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=())
  c.dataset.name = "yeast"
  c.dataset.tasks = args.tasks
  c.num_steps = 600
  c.batch_size = 64
  c.eval_batch_size = 256
  c.log_every = 50
  c.checkpoint.every_steps = 300
  c.optimizer.learning_rate = 1e-3
  c.model.encoder.name = "mlp"
  c.model.encoder.hidden_dims = (256, 128)
  c.model.head.hidden_dim = 64
  return c
