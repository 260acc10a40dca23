"""Benchmarks of django-inngest against its peers, run side by side on this machine.

`python -m bench` (or `make bench`) installs each peer into its own virtual environment under
`bench/.venvs/`, runs workloads W1 to W6 on PostgreSQL and SQLite, and writes `bench/RESULTS.md`.
The orchestrator needs only the standard library; everything that touches a peer runs in that
peer's environment (`bench.driver`, `bench.worker`).
"""
