"""The machine and the versions a benchmark ran on (the ``machine`` and ``versions`` of the JSON)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

__all__ = ["machine", "versions"]

#: Distributions whose versions the results depend on.
DISTRIBUTIONS = ("ceap", "moto", "boto3", "botocore", "pydantic", "jsonata-python", "pyspark")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1024 * 1024), 1)
    except (OSError, ValueError):
        pass
    return None


def machine() -> dict[str, Any]:
    """CPU, core counts, memory and OS of this machine.

    ``load_average`` (1, 5, 15 minutes, when read) tells whether other work
    shared the machine: above the core count, the numbers are low.

    >>> sorted(machine())
    ['cpu', 'cpus', 'cpus_usable', 'load_average', 'memory_gib', 'os']
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "load_average": load,
    }


def versions() -> dict[str, str | None]:
    """Python and the installed versions of the distributions the results depend on (``None``: not installed)."""
    found: dict[str, str | None] = {"python": f"{platform.python_implementation()} {sys.version.split()[0]}"}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
