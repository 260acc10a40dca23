"""One worker process of the system under test, with the probe installed first."""

from __future__ import annotations

import argparse
import os

from bench import probe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=10)
    options = parser.parse_args()
    probe.install()
    from bench.systems import load

    system = load(os.environ["BENCH_SYSTEM"], os.environ["BENCH_BACKEND"])
    system.run_worker(options.concurrency)


if __name__ == "__main__":
    main()
