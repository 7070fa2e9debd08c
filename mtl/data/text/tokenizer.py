"""Byte-level tokenizer with special and task-prefix tokens.

Ids 0..255 are the UTF-8 bytes; then PAD, BOS, EOS, SEP; then `num_task_tokens`
task-prefix tokens (task i is id TASK0 + i); the vocabulary is rounded up to a
multiple of 16 (unused ids at the end). A text-task sequence is

  [TASK_i] prompt-bytes [SEP] answer-bytes [EOS]      (then PAD to length L)

Inputs are the sequence, targets are the sequence shifted left by one with -1
(ignored) wherever no loss is wanted (prompt, padding).
"""
from __future__ import annotations

import dataclasses

import numpy as np

NUM_BYTES = 256
PAD, BOS, EOS, SEP = 256, 257, 258, 259
TASK0 = 260


@dataclasses.dataclass(frozen=True)
class ByteTokenizer:
  """UTF-8 byte tokenizer. num_task_tokens: task prefix ids reserved."""
  num_task_tokens: int = 8

  def __post_init__(self):
    if self.num_task_tokens < 0:
      raise ValueError(f"num_task_tokens must be >= 0, got {self.num_task_tokens}")

  @property
  def vocab_size(self) -> int:
    n = TASK0 + self.num_task_tokens
    return 16 * ((n + 15) // 16)

  def task_token(self, index: int) -> int:
    """Id of the prefix token of task `index` (0-based)."""
    if not 0 <= index < self.num_task_tokens:
      raise ValueError(f"task index {index} out of range [0, {self.num_task_tokens})")
    return TASK0 + index

  def encode(self, text: str) -> list[int]:
    """str -> list of byte ids (UTF-8)."""
    return list(text.encode("utf-8"))

  def decode(self, ids) -> str:
    """Ids -> str. Stops at the first EOS; other non-byte ids are dropped."""
    out = bytearray()
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == EOS:
        break
      if 0 <= i < NUM_BYTES:
        out.append(i)
    return out.decode("utf-8", errors="replace")


def pack_prompt_answer(prompt: list[int], answer: list[int], task_token: int,
                       seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """One example -> (tokens int32 [seq_len], targets int32 [seq_len]).

  tokens = [task] prompt [SEP] answer [EOS] PAD...; targets[t] = tokens[t+1]
  for positions that predict an answer byte or the EOS, else -1. Too-long
  prompts/answers are truncated (the answer keeps at least one byte when the
  prompt fits, and EOS is always predicted when it fits).
  """
  if seq_len < 4:
    raise ValueError(f"seq_len must be >= 4, got {seq_len}")
  prompt = list(prompt)[: seq_len - 3]
  room = seq_len - 3 - len(prompt)  # answer bytes that fit before EOS
  answer = list(answer)[:max(room, 0)]
  seq = [task_token] + prompt + [SEP] + answer + [EOS]
  seq = seq[:seq_len]
  tokens = np.full((seq_len,), PAD, np.int32)
  tokens[: len(seq)] = seq
  targets = np.full((seq_len,), -1, np.int32)
  start = 1 + len(prompt)  # index of SEP: predicts the first answer byte
  for t in range(start, len(seq) - 1):
    targets[t] = seq[t + 1]
  return tokens, targets


def pack_lm(ids: list[int], task_token: int, seq_len: int
            ) -> tuple[np.ndarray, np.ndarray]:
  """Plain LM chunk -> (tokens [seq_len], targets [seq_len]); every next token is a target."""
  if seq_len < 2:
    raise ValueError(f"seq_len must be >= 2, got {seq_len}")
  seq = ([task_token] + list(ids))[: seq_len + 1]
  tokens = np.full((seq_len,), PAD, np.int32)
  targets = np.full((seq_len,), -1, np.int32)
  n_in = min(len(seq), seq_len)
  tokens[:n_in] = seq[:n_in]
  tgt = seq[1:]
  targets[: len(tgt)] = tgt
  return tokens, targets
