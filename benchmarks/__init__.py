"""Throughput and scaling harnesses of the ceap engine, side by side with the asyncio bound and moto.

Run ``python -m benchmarks --help``; the published numbers are in ``docs/benchmarks.md``.
"""
