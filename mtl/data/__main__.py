"""Command line: build datasets. `python -m mtl.data multifashion yeast --data_dir DIR`."""
from __future__ import annotations

import argparse
import time

from mtl.data.build import get_info, prepare
from mtl.data.registry import names


def main(argv: list[str] | None = None) -> None:
  """`python -m mtl.data NAME... [--data_dir DIR]`: builds datasets, prints split sizes and build time."""
  p = argparse.ArgumentParser(description=main.__doc__)
  p.add_argument("names", nargs="+", choices=names())
  p.add_argument("--data_dir", default=None)
  p.add_argument("--source", default=None, help="raw-source override (only with a single name)")
  args = p.parse_args(argv)
  if args.source and len(args.names) > 1:
    p.error("--source applies to one dataset at a time")
  for name in args.names:
    t0 = time.time()
    prepare(name, args.data_dir, source=args.source)
    print(f"{name}: {get_info(name, args.data_dir).splits} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
  main()
