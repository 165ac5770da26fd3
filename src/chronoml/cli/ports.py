"""Who holds a TCP port: so ``chronoml server`` can say why it cannot start."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port``, from the kernel's tables (Linux only)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            # local address is HEX_IP:HEX_PORT; state 0A is LISTEN
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _process_of(inodes: set[str]) -> str | None:
    """``pid N (command line)`` of a process owning one of ``inodes``, if it is visible."""
    wanted = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = os.listdir(proc / "fd")
        except OSError:
            continue  # another user's process: not ours to inspect
        for fd in fds:
            try:
                target = os.readlink(proc / "fd" / fd)
            except OSError:
                continue
            if target in wanted:
                try:
                    raw = (proc / "cmdline").read_bytes()
                except OSError:
                    raw = b""
                cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {proc.name} ({cmd[:120] or '?'})"
    return None


def port_holder(host: str, port: int) -> str | None:
    """None when the port is free; else a sentence saying what holds it, as far as visible."""
    if port_free(host, port):
        return None
    who = _process_of(_listening_inodes(port))
    if who is None:
        return f"port {port} on {host} is in use (by a process this user cannot see)"
    return f"port {port} on {host} is in use by {who}"
