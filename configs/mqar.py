"""MQAR recall (Zoology) for the DecoderLM's token mixers.

arg: 'mixer=softmax|lightning|linear|conv,data=mqar[-L-K-V][-nN]' (default data 'mqar': L=64, K=8, V=128, Zoology's
format; 'mqar_legacy...' for the shortcut-prone first format), optional 'steps=', 'lr=', 'dim=', 'conv=K' (a gated
kernel-K short convolution before every mixer; mixer=conv needs it), 'slopes=s1+s2' (lightning per-head decay
slopes), 'qk=silu|none' and 'lrpe=1|0' (lightning q/k feature map and LRPE; qk=none,lrpe=0 is plain decayed linear
attention, which binds where the TransNormer default does not: docs/lm.md), 'positions=rope|learned|none' (softmax),
'feature_dim=' (linear). Recall = token_accuracy (only query
positions have targets); experiments/mqar_probe.py splits it by query order.
"""
import ml_collections

from configs import common
from mtl.data.text.datasets import mqar_spec


def get_config(arg: str | None = None):
  c = common.base_config()
  args = common.parse_arg(arg, data="mqar", steps=3000, lr=1e-3, dim=64, mixer="lightning", conv=0, slopes=(),
                          positions="rope", feature_dim=0, qk="silu", lrpe=1)
  c.dataset.name = args.data
  spec = mqar_spec(c.dataset.name)
  if spec is None:
    raise ValueError(f"configs/mqar.py: data={c.dataset.name!r} is not an MQAR dataset name")
  c.num_steps = args.steps
  c.batch_size = 64
  c.eval_batch_size = 256
  c.log_every = 100
  c.checkpoint.every_steps = 1000
  c.optimizer.learning_rate = args.lr
  c.optimizer.warmup_steps = min(100, c.num_steps // 10)
  c.checkpoint.every_steps = min(c.checkpoint.every_steps, c.num_steps)
  if args.positions not in ("rope", "learned", "none"):
    raise ValueError(f"configs/mqar.py: positions must be rope, learned or none, got {args.positions!r}")
  c.model.name = "lm"
  c.model.lm = ml_collections.ConfigDict(dict(
      vocab_size=spec.vocab_size, dim=args.dim, depth=2, num_heads=2, mlp_ratio=2.0,
      mixer=args.mixer, block_size=16, rope=args.positions == "rope",
      learned_positions=spec.seq_len if args.positions == "learned" else 0, short_conv=args.conv))
  if args.slopes:
    c.model.lm.decay_slopes = tuple(float(s) for s in args.slopes)
  if args.qk != "silu" or args.lrpe != 1:
    if args.mixer != "lightning":
      raise ValueError(f"configs/mqar.py: qk / lrpe are options of mixer=lightning, not {args.mixer!r}")
    if args.lrpe not in (0, 1):
      raise ValueError(f"configs/mqar.py: lrpe must be 0 or 1, got {args.lrpe}")
    c.model.lm.lightning_qk_activation = args.qk
    c.model.lm.lightning_lrpe = bool(args.lrpe)
  if args.feature_dim:
    if args.mixer != "linear":
      raise ValueError(f"configs/mqar.py: feature_dim is an option of mixer=linear, not {args.mixer!r}")
    c.model.lm.feature_dim = args.feature_dim
  return c
