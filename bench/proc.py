"""Resident memory and CPU time of a process tree, read from ``/proc`` (Linux; no psutil needed).

A ``zkauth serve --workers N`` is a supervisor and N worker processes (plus multiprocessing's
helpers): the benchmark measures the whole tree under the process it started.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

_PROC: Final = Path("/proc")
_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return raw[raw.rindex(")") + 2 :].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_kib(pids: Iterable[int]) -> int:
    """Sum of ``VmRSS`` (KiB) of the processes; those that are gone count 0."""
    total = 0
    for pid in pids:
        try:
            for line in (_PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def connection_owners(pids: Iterable[int], port: int) -> dict[int, int]:
    """Which of ``pids`` holds each established IPv4 TCP connection to local ``port``: the
    peer's port → the pid. Empty where ``/proc`` cannot be read."""
    sockets = {}  # "socket:[inode]" -> the peer's port
    try:
        rows = (_PROC / "net" / "tcp").read_text().splitlines()[1:]
    except OSError:
        return {}
    for row in rows:
        fields = row.split()
        local, peer, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.rpartition(":")[2], 16) == port:  # 01: ESTABLISHED
            sockets[f"socket:[{inode}]"] = int(peer.rpartition(":")[2], 16)
    owners = {}
    for pid in pids:
        try:
            entries = list((_PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(entry)
            except OSError:
                continue
            if target in sockets:
                owners[sockets[target]] = pid
    return owners


def machine_seconds() -> tuple[float, float, float]:
    """CPU time (s) of the whole machine from the first line of ``/proc/stat``: time spent in
    processes (user, nice, system: every process and its syscalls), in interrupts (irq and
    softirq: e.g. loopback networking, accounted to no process), and stolen by the hypervisor."""
    try:
        fields = (_PROC / "stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system) / _TICKS, (irq + softirq) / _TICKS, steal / _TICKS


def snapshot() -> dict[int, tuple[int, str, float]]:
    """Every process now: pid → (parent pid, command name, CPU seconds used so far)."""
    found = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime
        found[int(entry.name)] = (int(fields[1]), comm, cpu)
    return found


def descendants(processes: dict[int, tuple[int, str, float]], root: int) -> set[int]:
    """``root`` and its descendants among ``processes`` (a :func:`snapshot`)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        current = todo.pop()
        if current in processes or current == root:
            found.add(current)
        todo.extend(children.get(current, []))
    return found
