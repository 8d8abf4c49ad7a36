"""Profile the bundled demo with the Python API and write every format.

Used by `make run`: prints where each file went and the top functions.
"""

from __future__ import annotations

import os
import sys

import spprof
from spprof.writers import formats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import demo  # noqa: E402

EXTENSIONS = {
    "speedscope": ".speedscope.json",
    "collapsed": ".collapsed",
    "pprof": ".pb.gz",
    "html": ".html",
    "text": ".txt",
}


def main(out_dir: str) -> int:
    os.makedirs(out_dir, exist_ok=True)
    with spprof.Profiler(interval_ms=5) as session:
        demo.main(2.0)
    prof = session.profile
    assert prof is not None
    written = []
    for fmt in formats():
        path = os.path.join(out_dir, "demo" + EXTENSIONS.get(fmt, "." + fmt))
        prof.save(path, format=fmt)
        written.append((fmt, path))
    st = prof.stats
    print(
        f"\nspprof demo: {prof.total_duration_ms / 1000:.2f} s, {prof.sample_count} samples, "
        f"{len(prof.thread_ids)} threads, {prof.total_cpu_ms / 1000:.2f} s CPU sampled, "
        f"overhead {st.overhead_percent:.2f}% (measured)"
    )
    for fmt, path in written:
        print(f"  {fmt:<10} {path}")
    agg = prof.aggregate()
    total = agg.total_weight or 1
    print("\ntop functions by self CPU time:")
    for fs in agg.function_stats()[:8]:
        where = f"{os.path.basename(fs.filename)}:{fs.lineno}"
        print(f"  {100 * fs.self_weight / total:5.1f}%  {fs.function_name:<28} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/demo"))
