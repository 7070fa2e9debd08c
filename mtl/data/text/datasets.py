"""Text datasets with the `mtl.data` interface: `get_info(name)`, `make_loader(name, split, ...)`.

Names:
  'gcide_text'  multi-task byte-level LM, seq_len 128, three tasks sharing one
                decoder, told apart by a task-prefix token:
                  definition  word -> GCIDE definition   (prefix task 0)
                  reverse     definition -> word         (prefix task 1)
                  pycode      stdlib source LM           (prefix task 2)
  'mqar'        MQAR recall in Zoology's format (mtl/data/text/mqar.py), seq_len 64, 8 key-value pairs,
                vocab 128, a fresh train stream;
  'mqar-L-K-V'  the same with seq_len L, K pairs, vocab V (e.g. 'mqar-256-16-8192');
  'mqar-L-K-V-nN'  a fixed train set of N examples (Zoology trains on 100k at L=64, 20k above);
  'mqar_legacy', 'mqar_legacy-L-K-V[-nN]'  the first (shortcut-prone) format: answers visible after queries.
Batches (numpy): 'tokens' int32 [B, L]; per task `name` targets int32 [B, L]
(-1 = no loss; rows of other tasks are all -1) and 'mask/name' float32 [B]
(1 where the row belongs to the task). All tasks have kind 'lm'.

Example i of a split is a pure function of (split, i): the loader's state is a
position, so resume is exact. gcide_text examples interleave the tasks
(i % num_tasks); the split size is num_tasks * (number of dictionary words in
the split). MQAR splits use disjoint seeds (train 0, validation 1, test 2).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from mtl.data.registry import DATASETS
from mtl.data.text import gcide, mqar, stdlib_source
from mtl.data.text.tokenizer import ByteTokenizer, pack_lm, pack_prompt_answer
from mtl.tasks.base import TaskSpec

GCIDE_TASKS = ("definition", "reverse", "pycode")
GCIDE_SEQ_LEN = 128
MQAR_DEFAULT = (64, 8, 128)
MQAR_SPLIT_SIZES = {"train": 1_000_000, "validation": 2048, "test": 2048}
SPLITS = ("train", "validation", "test")
TOKENIZER = ByteTokenizer(num_task_tokens=8)


@dataclasses.dataclass(frozen=True)
class Info:
  """name, input_key ('tokens'), input_shape (L,), tasks, splits {split: size}, vocab_size."""
  name: str
  input_key: str
  input_shape: tuple
  tasks: tuple
  splits: dict
  vocab_size: int


@dataclasses.dataclass(frozen=True)
class MqarSpec:
  """A parsed MQAR dataset name: seq_len, num_kv, vocab_size, fmt, num_train (None = stream)."""
  seq_len: int
  num_kv: int
  vocab_size: int
  fmt: str
  num_train: int | None


def mqar_spec(name: str) -> MqarSpec | None:
  """MqarSpec of an MQAR dataset name, None for other names; bad arguments raise."""
  m = re.fullmatch(r"mqar(_legacy)?(?:-(\d+)-(\d+)-(\d+))?(?:-n(\d+))?", name)
  if not m:
    return None
  fmt = "legacy" if m.group(1) else "zoology"
  seq_len, num_kv, vocab = (int(g) for g in m.group(2, 3, 4)) if m.group(2) else MQAR_DEFAULT
  num_train = int(m.group(5)) if m.group(5) else None
  mqar.check_args(seq_len, num_kv, vocab, fmt)
  if num_train is not None and num_train < 1:
    raise ValueError(f"MQAR dataset {name!r}: the fixed train set needs >= 1 example")
  return MqarSpec(seq_len, num_kv, vocab, fmt, num_train)


def _mqar_args(name: str) -> tuple[int, int, int] | None:
  spec = mqar_spec(name)
  return None if spec is None else (spec.seq_len, spec.num_kv, spec.vocab_size)


def get_info(name: str) -> Info:
  """Info of a text dataset (see the module docstring for names)."""
  if name == "gcide_text":
    v = TOKENIZER.vocab_size
    pairs = gcide.load_pairs()
    n = {s: len(GCIDE_TASKS) * len(gcide.split_pairs(pairs, s)) for s in SPLITS}
    tasks = tuple(TaskSpec(t, "lm", v, metric="token_accuracy")
                  for t in GCIDE_TASKS)
    return Info(name, "tokens", (GCIDE_SEQ_LEN,), tasks, n, v)
  spec = mqar_spec(name)
  if spec is not None:
    sizes = dict(MQAR_SPLIT_SIZES)
    if spec.num_train is not None:
      sizes["train"] = spec.num_train
    return Info(name, "tokens", (spec.seq_len,),
                (TaskSpec("mqar", "lm", spec.vocab_size, metric="token_accuracy"),),
                sizes, spec.vocab_size)
  raise ValueError(f"unknown text dataset {name!r}; known: 'gcide_text', "
                   f"'mqar[_legacy][-L-K-V][-nN]'")


def gcide_example(split: str, index: int, seq_len: int = GCIDE_SEQ_LEN,
                  tasks: tuple[str, ...] = GCIDE_TASKS
                  ) -> tuple[str, np.ndarray, np.ndarray]:
  """Example `index` of a gcide_text split: (task, tokens [L], targets [L])."""
  unknown = [t for t in tasks if t not in GCIDE_TASKS]
  if unknown or not tasks:
    raise ValueError(f"unknown gcide_text task(s) {unknown or tasks}; "
                     f"expected a subset of {GCIDE_TASKS}")
  task = tasks[index % len(tasks)]
  j = index // len(tasks)
  tok = TOKENIZER.task_token(GCIDE_TASKS.index(task))
  if task == "pycode":
    n = stdlib_source.num_chunks(split, seq_len)
    ids = stdlib_source.chunk(split, j % n, seq_len)
    return (task,) + pack_lm(ids, tok, seq_len)
  pairs = gcide.split_pairs(gcide.load_pairs(), split)
  word, definition = pairs[j % len(pairs)]
  w, d = TOKENIZER.encode(word), TOKENIZER.encode(definition)
  prompt, answer = (w, d) if task == "definition" else (d, w)
  return (task,) + pack_prompt_answer(prompt, answer, tok, seq_len)


class Loader:
  """Epoch-shuffled batches of a text dataset; state = position (exact resume).

  Host `shard_index` of `shard_count` reads its rows of the global batch.
  """

  def __init__(self, name, split, batch_size, seed, shuffle, num_epochs,
               drop_remainder, shard_index, shard_count, tasks):
    if split not in SPLITS:
      raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.info = get_info(name)
    names = [t.name for t in self.info.tasks]
    self.tasks = tuple(tasks) if tasks else tuple(names)
    bad = [t for t in self.tasks if t not in names]
    if bad:
      raise ValueError(f"unknown task(s) {bad} for dataset {name!r}; "
                       f"expected a subset of {names}")
    self.name, self.split = name, split
    self.size = self.info.splits[split]
    if name == "gcide_text":  # only the chosen tasks' examples
      self.size = self.size // len(names) * len(self.tasks)
    self.global_batch = batch_size * shard_count
    self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
    self.num_epochs, self.drop_remainder = num_epochs, drop_remainder
    self.shard_index, self.shard_count = shard_index, shard_count
    self.position = 0
    self._perm_epoch, self._perm = None, None

  def _index(self, epoch: int, offset: np.ndarray) -> np.ndarray:
    if not self.shuffle or (self.name != "gcide_text" and mqar_spec(self.name).num_train is None):
      # Streamed MQAR examples are i.i.d. draws already; a fixed MQAR train set is reshuffled every epoch.
      return offset
    if self._perm_epoch != epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(
          self.size)
      self._perm_epoch = epoch
    return self._perm[offset]

  def _rows(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    b, seq_len = len(idx), self.info.input_shape[0]
    out = {"tokens": np.empty((b, seq_len), np.int32)}
    for t in self.tasks:
      out[t] = np.full((b, seq_len), -1, np.int32)
      out["mask/" + t] = np.zeros((b,), np.float32)
    if self.name == "gcide_text":
      for r, i in enumerate(idx):
        task, tokens, targets = gcide_example(self.split, int(i), seq_len,
                                              self.tasks)
        out["tokens"][r], out[task][r], out["mask/" + task][r] = (
            tokens, targets, 1.0)
    else:
      spec = mqar_spec(self.name)
      seed = (self.seed if self.split == "train" else 0) * 3 + SPLITS.index(
          self.split)
      for r, i in enumerate(idx):
        t, y = mqar.example(np.random.default_rng([seed, int(i)]), spec.seq_len,
                            spec.num_kv, spec.vocab_size, fmt=spec.fmt)
        out["tokens"][r], out["mqar"][r], out["mask/mqar"][r] = t, y, 1.0
    return out

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    epoch, offset = divmod(self.position, self.size)
    if self.num_epochs is not None and epoch >= self.num_epochs:
      raise StopIteration
    take = np.arange(offset, min(offset + self.global_batch, self.size))
    if len(take) < self.global_batch and self.drop_remainder:
      self.position = (epoch + 1) * self.size
      return next(self)
    self.position += len(take)
    rows = -(-len(take) // self.shard_count)
    take = take[self.shard_index * rows:(self.shard_index + 1) * rows]
    return self._rows(self._index(epoch, take))

  def get_state(self) -> dict:
    return {"position": int(self.position)}

  def set_state(self, state: dict) -> None:
    self.position = int(state["position"])


def make_loader(name: str, split: str, *, batch_size: int, seed: int = 0,
                shuffle: bool = True, num_epochs: int | None = None,
                drop_remainder: bool = True, data_dir: str | None = None,
                shard_index: int = 0, shard_count: int = 1,
                tasks=None, worker_count: int = 0) -> Loader:
  """Batches of `name`/`split` (see module docstring). data_dir, worker_count unused (data is read from the system)."""
  del data_dir, worker_count
  return Loader(name, split, batch_size, seed, shuffle, num_epochs,
                drop_remainder, shard_index, shard_count, tasks)


class TextDataset:
  """Registry provider of the text datasets (see the module docstring)."""

  def info(self, name: str, data_dir: str | None = None) -> Info:
    del data_dir  # text data is read from installed packages
    return get_info(name)

  def loader(self, name: str, split: str, **kwargs) -> Loader:
    return make_loader(name, split, **kwargs)


DATASETS.register("gcide_text", TextDataset())
DATASETS.register("mqar", TextDataset(), family=True)
DATASETS.register("mqar_legacy", TextDataset(), family=True)
