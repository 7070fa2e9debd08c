"""Multi-task byte-level decoder LM on GCIDE (definition, reverse dictionary) + stdlib source.

arg: 'mixer=softmax' or 'mixer=lightning' (default), optional 'tasks=definition+reverse',
'draft=0.25+0.5' (train nested speculative drafts at these widths, distilled from the full model; see
mtl/train/nested_draft.py), softmax-mixer KV layouts 'kv_heads=' (grouped-query attention, 1 = MQA) and
'kv_share=' (cross-layer attention: adjacent layers sharing K/V; docs/gqa.md), and size overrides 'dim=', 'depth=', 'heads=', 'steps=', 'batch=' for small runs.
Dataset 'gcide_text' (mtl/data/text/datasets.py), model 'lm' (mtl.models.lm.DecoderLM). A 2-CPU-core run
and its results: docs/lm.md.
"""
import ml_collections

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg)
  c.dataset.name = "gcide_text"
  c.dataset.tasks = tuple(t for t in args.get("tasks", "").split("+") if t)
  c.num_steps = int(args.get("steps", 20000))
  c.batch_size = int(args.get("batch", 64))
  c.eval_batch_size = 64
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint.every_steps = 1000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = min(500, c.num_steps // 10)
  c.optimizer.weight_decay = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.model.name = "lm"
  c.model.lm = ml_collections.ConfigDict(dict(
      vocab_size=272, dim=int(args.get("dim", 256)), depth=int(args.get("depth", 4)),
      num_heads=int(args.get("heads", 4)), mlp_ratio=2.0, mixer=args.get("mixer", "lightning"), block_size=64,
      rope=True, num_kv_heads=int(args["kv_heads"]) if "kv_heads" in args else None,
      kv_share=int(args.get("kv_share", 1))))
  c.draft.widths = tuple(float(w) for w in args.get("draft", "").split("+") if w)
  c.eval_every = min(c.eval_every, c.num_steps)
  return c
