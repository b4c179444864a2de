"""What keeps a training run safe: one trainer per run directory, and a clean stop on signals."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "train.lock"


class RunLockedError(RuntimeError):
    """Another process is training into the same run directory."""


@contextlib.contextmanager
def run_lock(run_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_path/train.lock` while training.

    The lock is an `flock`, so the kernel releases it when the process dies, however it dies: a
    killed run never leaves a stale lock behind. The file records who holds it.
    """
    run_path.mkdir(parents=True, exist_ok=True)
    path = run_path / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLockedError(
                f"{run_path} is being trained by {holder}; wait for it to finish or choose "
                "another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class StopRequest:
    """The first SIGINT/SIGTERM received while armed (`signum`, else None)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        if signum == signal.SIGINT:  # a second Ctrl-C interrupts at once
            signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a request the training loop honours between steps.

    Outside the main thread (where Python cannot install handlers) nothing is armed.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
