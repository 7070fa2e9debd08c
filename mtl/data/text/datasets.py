"""Text datasets with the `mtl.data` interface: `get_info(name)`, `make_loader(name, split, ...)`.

Names:
  'gcide_text'  multi-task byte-level LM, seq_len 128, three tasks sharing one
                decoder, told apart by a task-prefix token:
                  definition  word -> GCIDE definition   (prefix task 0)
                  reverse     definition -> word         (prefix task 1)
                  pycode      stdlib source LM           (prefix task 2)
  'mqar'        MQAR recall, seq_len 64, 8 key-value pairs, vocab 128;
  'mqar-L-K-V'  MQAR with seq_len L, K pairs, vocab V (e.g. 'mqar-256-16-256').
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


def _mqar_args(name: str) -> tuple[int, int, int] | None:
  if name == "mqar":
    return MQAR_DEFAULT
  m = re.fullmatch(r"mqar-(\d+)-(\d+)-(\d+)", name)
  if m:
    args = tuple(int(g) for g in m.groups())
    mqar.check_args(*args)
    return args
  return None


def get_info(name: str) -> Info:
  """Info of a text dataset (see the module docstring for names)."""
  if name == "gcide_text":
    v = TOKENIZER.vocab_size
    pairs = gcide.load_pairs()
    n = {s: len(GCIDE_TASKS) * len(gcide.split_pairs(pairs, s)) for s in SPLITS}
    tasks = tuple(TaskSpec(t, "lm", v, metric="token_accuracy")
                  for t in GCIDE_TASKS)
    return Info(name, "tokens", (GCIDE_SEQ_LEN,), tasks, n, v)
  args = _mqar_args(name)
  if args is not None:
    seq_len, _, vocab = args
    return Info(name, "tokens", (seq_len,),
                (TaskSpec("mqar", "lm", vocab, metric="token_accuracy"),),
                dict(MQAR_SPLIT_SIZES), vocab)
  raise ValueError(f"unknown text dataset {name!r}; known: 'gcide_text', "
                   f"'mqar', 'mqar-L-K-V'")


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
    if not self.shuffle or self.name != "gcide_text":
      # MQAR examples are i.i.d. draws already.
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
      seq_len, num_kv, vocab = _mqar_args(self.name)
      seed = (self.seed if self.split == "train" else 0) * 3 + SPLITS.index(
          self.split)
      for r, i in enumerate(idx):
        t, y = mqar.example(np.random.default_rng([seed, int(i)]), seq_len,
                            num_kv, vocab)
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
