"""Multi-task byte-level decoder LM on GCIDE (definition, reverse dictionary) + stdlib source.

arg: 'mixer=softmax' or 'mixer=lightning' (default), optional 'tasks=definition+reverse',
'draft=0.25+0.5' (train nested speculative drafts at these widths, distilled from the full model; see
mtl/nested_draft.py), softmax-mixer KV layouts 'kv_heads=' (grouped-query attention, 1 = MQA, 0 = multi-head)
and 'kv_share=' (cross-layer attention: adjacent layers sharing K/V; docs/gqa.md), and size overrides 'dim=',
'depth=', 'heads=', 'steps=', 'batch=' for small runs.
Dataset 'gcide_text' (mtl/data/text/datasets.py), model 'lm' (mtl.models.lm.DecoderLM). A 2-CPU-core run
and its results: docs/lm.md.
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, tasks=(), steps=20000, batch=64, dim=256, depth=4, heads=4, mixer="lightning",
                          draft=(), kv_heads=0, kv_share=1)
  c.dataset.name = "gcide_text"
  c.dataset.tasks = args.tasks
  c.num_steps = args.steps
  c.batch_size = args.batch
  c.eval_batch_size = 64
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint.every_steps = 1000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = min(500, c.num_steps // 10)
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.model.name = "lm"
  c.model.lm = ml_collections.ConfigDict(dict(
      vocab_size=272, dim=args.dim, depth=args.depth, num_heads=args.heads, mlp_ratio=2.0, mixer=args.mixer,
      block_size=64, rope=True, num_kv_heads=args.kv_heads or None, kv_share=args.kv_share))
  c.draft.widths = tuple(float(w) for w in args.draft)
  if c.draft.widths:
    c.train_step = "nested_draft"
  c.eval_every = min(c.eval_every, c.num_steps)
  return c
