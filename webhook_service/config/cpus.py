"""How many CPUs this process may use: what "one per CPU" defaults count (`queue.worker_processes`,
`media.max_concurrent_image_decodes`). `os.cpu_count()` counts the machine's, which in a container limited
to one CPU of a 64-core host would start 64 consumer processes of 100-150 MiB each."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_OWN_CGROUP = Path("/proc/self/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT, own_cgroup: Path = _OWN_CGROUP) -> int:
    """The CPUs the scheduler lets this process run on (its affinity: taskset, a container's cpuset), fewer
    when a cgroup v2 quota on its group or a parent (`cpu.max`: a container's --cpus, systemd's CPUQuota)
    grants less CPU time than that; at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, own_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, own_cgroup: Path = _OWN_CGROUP) -> float | None:
    """The smallest `cpu.max` quota (in CPUs) on this process's cgroup v2 group and its parents, or None."""
    try:
        lines = own_cgroup.read_text().splitlines()
    except OSError:
        return None
    # cgroup v2 has one line, "0::<path>"; a v1 hierarchy sets no cpu.max.
    paths = [line[3:] for line in lines if line.startswith("0::")]
    if not paths:
        return None
    group = (cgroup_root / paths[0].lstrip("/")).resolve()
    quotas = []
    for directory in [group, *group.parents]:
        quota = _quota(directory / "cpu.max")
        if quota is not None:
            quotas.append(quota)
        if directory == cgroup_root:
            break
    return min(quotas) if quotas else None


def _quota(path: Path) -> float | None:
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if period > 0 else None
