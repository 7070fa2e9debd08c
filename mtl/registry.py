"""One plug-in style for every kind of variant: a named `Registry` per kind.

Each kind (models, encoders, heads, task kinds, datasets, multi-task methods, train-step variants) has one
`Registry` instance living beside the code that uses it. A variant registers itself in its own file:

  from mtl.models.registry import ENCODERS

  @ENCODERS.register("my_encoder")
  class MyEncoder(nn.Module): ...

and a config names it (`config.model.encoder.name = "my_encoder"`). Lookups accept, besides registered names,
`"package.module:attr"`, which imports the module and returns the attribute, so a fork can plug in a variant
from its own package without editing `mtl` at all.

Built-in variants that live in higher layers (e.g. the sandwich step of `mtl.control`) are registered by
`mtl.plugins`, which a lookup imports the first time a name is not found. Importing `mtl.train` therefore never
imports `mtl.control`: the dependency goes only the other way.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")

BUILTIN_PLUGINS = "mtl.plugins"


class Registry(Generic[T]):
  """Name -> object for one kind of plug-in (see module docstring).

  Attributes:
    kind: what the entries are, used in error messages (e.g. 'encoder').
    package: if set, an unknown `name` first imports module `package.name` when it exists (big_vision's
      import-by-name: a task kind 'normals' lives in `mtl/tasks/normals.py` and registers itself there).
    families: names registered with `family=True` also resolve `name-<args>` (e.g. 'mqar-64-8-128').
  """

  def __init__(self, kind: str, package: str | None = None):
    self.kind = kind
    self.package = package
    self._entries: dict[str, T] = {}
    self._families: set[str] = set()

  def register(self, name: str, obj: T | None = None, *, family: bool = False) -> Callable[[T], T] | T:
    """Registers `obj` under `name` (or returns a decorator doing so). A name registered twice is an error."""
    if not name or not isinstance(name, str) or ":" in name:
      raise ValueError(f"{self.kind} name must be a non-empty string without ':', got {name!r}")

    def add(o: T) -> T:
      if name in self._entries and self._entries[name] is not o:
        raise ValueError(f"{self.kind} {name!r} is registered twice")
      self._entries[name] = o
      if family:
        self._families.add(name)
      return o
    return add if obj is None else add(obj)

  def names(self) -> tuple[str, ...]:
    _load_builtins()
    return tuple(sorted(self._entries))

  def __contains__(self, name: str) -> bool:
    return self._find(name) is not None

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def family_of(self, name: str) -> str:
    """The registered name that `name` resolves to ('mqar-64-8-128' -> 'mqar'); unknown names raise."""
    self.get(name)
    return name if name in self._entries else name.split("-", 1)[0]

  def _find(self, name: str) -> T | None:
    if name in self._entries:
      return self._entries[name]
    head = name.split("-", 1)[0]
    if head in self._families and head != name:
      return self._entries[head]
    return None

  def get(self, name: str) -> T:
    """The object registered as `name`, or `module:attr` imported; unknown names raise naming the known ones."""
    if not isinstance(name, str) or not name:
      raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
    if ":" in name:
      module, _, attr = name.partition(":")
      try:
        return getattr(importlib.import_module(module), attr)
      except (ImportError, AttributeError) as e:
        raise ValueError(f"{self.kind} {name!r}: cannot import {attr!r} from module {module!r} ({e})") from e
    found = self._find(name)
    if found is None and self.package and name.isidentifier():
      module = f"{self.package}.{name}"
      if importlib.util.find_spec(module) is not None:
        importlib.import_module(module)
        found = self._find(name)
    if found is None:
      _load_builtins()
      found = self._find(name)
    if found is None:
      raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
                       f"(or 'package.module:attr' of a variant outside mtl)")
    return found


_builtins_loaded = False


def _load_builtins() -> None:
  global _builtins_loaded
  if not _builtins_loaded:
    _builtins_loaded = True
    importlib.import_module(BUILTIN_PLUGINS)
