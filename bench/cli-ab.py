#!/usr/bin/env python3
"""An interleaved A/B of two builds of `hostprocess run`: the builds alternate run by run (the
order swapped every round), so load that drifts during the measurement biases neither. Each
run's wall time and the CPU of the process and its children (init, the command) are taken.
State roots on a tmpfs, as `/run` is on most nodes. Root only.

Usage: bench/cli-ab.py A_BIN B_BIN BUNDLE [RUNS]   (RUNS per build, default 600; 10 more
of each warm up first). BUNDLE: a bundle such as bench/cli.sh makes (its config.json runs
/bin/true)."""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

a, b, bundle = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
runs = int(sys.argv[4]) if len(sys.argv) > 4 else 600
root = tempfile.mkdtemp()
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "hostprocess-ab", root], check=True)
wall = {a: [], b: []}
cpu = {a: [], b: []}
try:
    for i in range(runs + 10):
        for binary in (a, b) if i % 2 == 0 else (b, a):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([binary, "--root", root, "run", "-b", bundle, "ab"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            took = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 10:
                wall[binary].append(took)
                cpu[binary].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
finally:
    subprocess.run(["umount", root], check=False)
    os.rmdir(root)
for name, binary in (("A", a), ("B", b)):
    print(f"{name} {binary}: median {statistics.median(wall[binary]) * 1e3:.3f} ms, "
          f"mean {statistics.mean(wall[binary]) * 1e3:.3f} ms, "
          f"CPU per run {statistics.mean(cpu[binary]) * 1e3:.3f} ms ({runs} runs)")
