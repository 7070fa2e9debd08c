r"""Runs N processes of one command on this machine, joined by `jax.distributed` (CPU or one GPU each).

  python -m launch.local --num_processes 2 --devices_per_process 4 -- \
      python -m experiments.train --config configs/multifashion.py --workdir /tmp/mf2

Each process gets MTL_COORDINATOR / MTL_NUM_PROCESSES / MTL_PROCESS_ID (read by mtl.distributed); on CPU,
`--devices_per_process` simulated devices. Output of process i goes to <log_dir>/process_<i>.log and process 0
is echoed. The launcher exits with the first non-zero exit code, terminating the others.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch(command: list[str], num_processes: int, devices_per_process: int, log_dir: str,
           timeout_s: float | None = None, env: dict | None = None) -> int:
  """Starts the processes, waits for all; returns 0 if all succeeded, else the first failing exit code."""
  if num_processes < 1 or devices_per_process < 1:
    raise ValueError("num_processes and devices_per_process must be >= 1")
  if not command:
    raise ValueError("no command to launch (put it after --)")
  os.makedirs(log_dir, exist_ok=True)
  coordinator = f"127.0.0.1:{free_port()}"
  procs, logs = [], []
  for i in range(num_processes):
    penv = dict(os.environ if env is None else env)
    penv.update(MTL_COORDINATOR=coordinator, MTL_NUM_PROCESSES=str(num_processes), MTL_PROCESS_ID=str(i),
                MTL_LOCAL_DEVICE_COUNT=str(devices_per_process))
    penv["XLA_FLAGS"] = (penv.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
                         + f" --xla_force_host_platform_device_count={devices_per_process}").strip()
    log = open(os.path.join(log_dir, f"process_{i}.log"), "w")
    logs.append(log)
    procs.append(subprocess.Popen(command, env=penv, stdout=log, stderr=subprocess.STDOUT))
  deadline = None if timeout_s is None else time.time() + timeout_s
  code = 0
  try:
    while any(p.poll() is None for p in procs):
      failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
      if failed or (deadline and time.time() > deadline):
        code = failed[0] if failed else 124
        break
      time.sleep(0.2)
    else:
      code = next((p.returncode for p in procs if p.returncode), 0)
  finally:
    for p in procs:
      if p.poll() is None:
        p.terminate()
    for p in procs:
      try:
        p.wait(timeout=30)
      except subprocess.TimeoutExpired:
        p.kill()
    for log in logs:
      log.close()
  return code


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if "--" not in argv:
    print("usage: python -m launch.local [--num_processes N] [--devices_per_process D] -- COMMAND ...",
          file=sys.stderr)
    return 2
  split = argv.index("--")
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--log_dir", default="/tmp/mtl_launch_logs")
  parser.add_argument("--timeout_s", type=float, default=None)
  args = parser.parse_args(argv[:split])
  code = launch(argv[split + 1:], args.num_processes, args.devices_per_process, args.log_dir, args.timeout_s)
  with open(os.path.join(args.log_dir, "process_0.log")) as f:
    sys.stdout.write(f.read())
  return code


if __name__ == "__main__":
  sys.exit(main())
