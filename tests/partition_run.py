"""``nox -s chaos``'s partition on real links: builds the namespaced hosts
(``netns.py``, as root) and runs the partition campaign from the clients'
namespace, printing its figures; says why and exits 0 where it cannot."""

from __future__ import annotations

import argparse
import subprocess
import sys

from . import netns


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run")
    parser.add_argument("--only", action="append", default=[], help="(ignored: partition only)")
    args = parser.parse_args()
    reason = netns.unavailable()
    if reason is not None:
        print(f"partition on network namespaces: skipped ({reason})", file=sys.stderr)
        return 0
    with netns.hosts() as hosts:
        command = [*hosts.exec_in("c"), sys.executable, "-m", "tests.chaos", "--namespaces",
                   hosts.name, "--only", "partition", "--seconds", str(args.seconds)]  # fmt: skip
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
