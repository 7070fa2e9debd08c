"""GCIDE (Debian `dict-gcide`) -> (word, definition) pairs.

Files: a dictd index (`headword \\t offset \\t length`, numbers in dictd's
base64 with alphabet A-Za-z0-9+/, most significant digit first) and the
dictzip'ed dictionary (gzip compatible). An entry looks like

  Ablation \\Ab*la"tion\\, n. [L. ablatio, fr. ablatus p. p. of
     auferre to carry away; ...]
     1. A carrying or taking away; removal. --Jer. Taylor.
        [1913 Webster]

The first definition is the first paragraph after the header (the headword
line plus continuation lines while a '[' etymology is open), with source tags
('[1913 Webster]', '[PJC]'), citations ('--Author.') and sense numbers removed.

Splits are by a hash of the lowercased word (train 90%, validation 5%,
test 5%), so a word and its definition are in the same split for both the
definition-modelling and the reverse-dictionary task.
"""
from __future__ import annotations

import functools
import gzip
import os
import re
import zlib

DICT_PATH = "/usr/share/dictd/gcide.dict.dz"
INDEX_PATH = "/usr/share/dictd/gcide.index"
SPLITS = ("train", "validation", "test")

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VAL = {c: i for i, c in enumerate(_B64)}
_TAG = re.compile(r"\[(?:1913 Webster|PJC|AS|RJC|WordNet[^\]]*|Webster[^\]]*|"
                  r"[A-Z]{1,4})\]")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")


def b64_decode(s: str) -> int:
  """dictd base64 number -> int ('BQ+' -> 1086)."""
  if not s:
    raise ValueError("empty dictd base64 number")
  n = 0
  for c in s:
    if c not in _B64_VAL:
      raise ValueError(f"bad dictd base64 digit {c!r} in {s!r}")
    n = n * 64 + _B64_VAL[c]
  return n


def read_index(path: str = INDEX_PATH) -> list[tuple[str, int, int]]:
  """dictd index -> [(headword, offset, length)] in file order."""
  out = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      parts = line.rstrip("\n").split("\t")
      if len(parts) != 3:
        raise ValueError(f"{path}:{lineno}: expected 3 tab-separated fields, "
                         f"got {len(parts)}")
      out.append((parts[0], b64_decode(parts[1]), b64_decode(parts[2])))
  return out


def _paragraphs(text: str) -> list[list[str]]:
  paras, cur = [], []
  for line in text.split("\n"):
    if line.strip():
      cur.append(line)
    elif cur:
      paras.append(cur)
      cur = []
  if cur:
    paras.append(cur)
  return paras


def _clean(lines: list[str], max_chars: int) -> str:
  s = " ".join(l.strip() for l in lines)
  s = _TAG.sub(" ", s)
  s = re.sub(r"\s+", " ", s).strip()
  s = re.sub(r"^(?:\[[^\]]*\]\s*)+", "", s)     # leading etymology
  s = re.sub(r"^(?:\d+\.|\([a-z]\))\s*", "", s)   # sense number
  s = s.split(" --")[0].split('"')[0].strip()       # citations, quotations
  s = s.replace("{", "").replace("}", "")
  if len(s) > max_chars:
    cut = s[:max_chars].rsplit(" ", 1)[0]
    s = cut.rstrip(",;:")
  s = re.sub(r"\s*\[[^\]]*$", "", s)               # unclosed bracket
  return s.strip()


def parse_entry(text: str, word: str, max_chars: int = 120) -> str | None:
  """First definition of `word` in one dictd entry `text`, or None.

  None when the entry's headword (before the first '\\') is not `word`
  (index lines for sub-entries point into their parent's entry) or when no
  definition text is found.
  """
  paras = _paragraphs(text)
  if not paras:
    return None
  head = paras[0][0]
  if "\\" not in head or head.split("\\")[0].strip().lower() != word.lower():
    return None
  first = paras[0]
  depth = 0
  i = 0
  for i, line in enumerate(first):
    if i > 0 and depth <= 0:
      break
    depth += line.count("[") - line.count("]")
  else:
    i = len(first)
  candidates = [first[i:]] + paras[1:3]
  for lines in candidates:
    if not lines or lines[0].strip().startswith(("Syn:", "Note:", "{")):
      continue
    d = _clean(lines, max_chars)
    if len(d) >= 3 and any(c.isalpha() for c in d):
      return d
  return None


@functools.lru_cache(maxsize=4)
def load_pairs(dict_path: str = DICT_PATH, index_path: str = INDEX_PATH,
               max_chars: int = 120, max_word_len: int = 24
               ) -> tuple[tuple[str, str], ...]:
  """All (word, first definition) pairs, one per distinct lowercase word.

  Keeps alphabetic single words (letters, ' and -) up to max_word_len
  bytes; the first parsable entry of a word wins. Takes a few seconds on the
  full 40 MB dictionary (cached per arguments).
  """
  for p in (dict_path, index_path):
    if not os.path.exists(p):
      raise FileNotFoundError(f"{p} not found: install the Debian package "
                              f"dict-gcide (apt-get install dict-gcide)")
  with gzip.open(dict_path) as f:
    data = f.read()
  seen, out = set(), []
  for word, off, length in read_index(index_path):
    key = word.lower()
    if key in seen or not _WORD.match(word) or len(word) > max_word_len:
      continue
    text = data[off: off + length].decode("utf-8", errors="replace")
    d = parse_entry(text, word, max_chars)
    if d is None:
      continue
    seen.add(key)
    out.append((key, d))
  return tuple(out)


def split_of(word: str) -> str:
  """Stable split of a word: crc32 % 100 -> train (<90) / validation / test."""
  h = zlib.crc32(word.lower().encode("utf-8")) % 100
  return "train" if h < 90 else ("validation" if h < 95 else "test")


def split_pairs(pairs, split: str) -> list[tuple[str, str]]:
  """The pairs whose word falls in `split` (one of SPLITS)."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  return [p for p in pairs if split_of(p[0]) == split]
