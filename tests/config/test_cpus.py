"""What "one per CPU" counts: the CPUs this process may use (its affinity), fewer under a cgroup v2 quota on
its group or a parent, never os.cpu_count()'s whole machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from webhook_service.config.cpus import available_cpus, cgroup_cpu_quota


def cgroups(tmp_path: Path, limits: dict[str, str]) -> tuple[Path, Path]:
    """A cgroup v2 tree under tmp_path (each key a group's path, its value its cpu.max) and the
    /proc/self/cgroup line that puts this process in the deepest one."""
    root = tmp_path / "cgroup"
    deepest = max(limits, key=len)
    for group, limit in limits.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        (root / group / "cpu.max").write_text(limit + "\n")
    (root / deepest).mkdir(parents=True, exist_ok=True)
    own = tmp_path / "self-cgroup"
    own.write_text(f"0::/{deepest}\n")
    return root, own


def test_a_quota_on_the_group_or_a_parent_caps_the_count(tmp_path):
    root, own = cgroups(tmp_path, {"system.slice": "150000 100000", "system.slice/web.service": "max 100000"})
    assert cgroup_cpu_quota(root, own) == 1.5
    assert available_cpus(root, own) == min(len(os.sched_getaffinity(0)), 2)  # 1.5 CPUs: two may run
    root, own = cgroups(tmp_path / "b", {"a": "50000 100000", "a/b": "300000 100000"})
    assert cgroup_cpu_quota(root, own) == 0.5
    assert available_cpus(root, own) == 1


@pytest.mark.parametrize("text", ["max 100000", "", "garbage", "1 0"])
def test_no_quota_or_one_that_cannot_be_read_leaves_the_affinity(tmp_path, text):
    root, own = cgroups(tmp_path, {"user.slice": text})
    assert cgroup_cpu_quota(root, own) is None
    assert available_cpus(root, own) == len(os.sched_getaffinity(0))


def test_without_cgroup_v2_the_affinity_counts(tmp_path):
    own = tmp_path / "self-cgroup"
    own.write_text("12:cpu,cpuacct:/docker/abc\n")  # a cgroup v1 hierarchy
    assert cgroup_cpu_quota(tmp_path, own) is None
    assert cgroup_cpu_quota(tmp_path, tmp_path / "absent") is None


def test_a_process_pinned_to_one_cpu_counts_one_and_the_worker_starts_one_consumer():
    script = (
        "from webhook_service.config.cpus import available_cpus\n"
        "from webhook_service.worker.supervisor import split_threads\n"
        "print(available_cpus(), split_threads(4))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),  # as `taskset -c`
    )
    assert result.stdout.strip() == "1 [4]"  # one consumer process with the four threads
