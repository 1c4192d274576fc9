"""What both parts of ``make run`` print with, and how they read a stage's ``/metrics``."""

from __future__ import annotations

import socket

import httpx

RULE = "─" * 78


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say(f"{RULE}\n{text}\n{RULE}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metric_lines(port: int) -> list[str] | None:
    """The samples of a stage's ``/metrics`` (no comments), or None when it does not answer."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def metric_total(lines: list[str], name: str) -> float:
    """The sum of ``name``'s samples over all their labels."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith((f"{name} ", f"{name}{{")))
