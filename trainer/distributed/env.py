"""The process group from torchrun's environment, rank-0 logging, and a heartbeat.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them, picks gloo on CPU and NCCL on GPU, and gives the process
group an explicit timeout: a collective that waits longer than that for a dead or stuck rank
raises instead of hanging, the rank exits non-zero and torchrun ends the job. Outside torchrun
it returns a world of one without creating a process group, so the same script runs
single-process unchanged.

The :class:`Heartbeat` records in torchrun's key-value store the last step each rank started;
when a collective fails, every surviving rank answers a roll call there, and
:func:`describe_failure` names the ranks that did not answer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

#: Default process-group timeout: with torchrun's 30 s grace to kill a stuck rank, a dead or
#: stuck rank ends the job within two minutes.
DEFAULT_TIMEOUT_S = 90.0
TIMEOUT_ENV = "SITEHAWK_DIST_TIMEOUT_S"


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None
    """``gloo`` / ``nccl`` when a process group exists, None for a plain single process."""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def distributed(self) -> bool:
        """True when running under torchrun with a process group (even a world of one)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that logs, shows progress and writes consolidated files."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set the process-group environment."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


_CURRENT: DistEnv | None = None


def init_distributed(timeout_s: float | None = None) -> DistEnv:
    """Join the process group torchrun describes (idempotent); a world of one outside torchrun.

    ``timeout_s`` (default ``$SITEHAWK_DIST_TIMEOUT_S`` or 120 s) bounds every collective.
    """
    global _CURRENT
    if _CURRENT is not None:
        return _CURRENT
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    if not launched_by_torchrun():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _CURRENT = DistEnv(device=device, timeout_s=timeout_s)
        return _CURRENT
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        backend, device = "nccl", f"cuda:{local_rank}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, timeout=timedelta(seconds=timeout_s), rank=rank, world_size=world
        )
    _CURRENT = DistEnv(rank, world, local_rank, device, backend, timeout_s)
    return _CURRENT


def current_env() -> DistEnv:
    """The environment :func:`init_distributed` set up (initialising it on first use)."""
    return _CURRENT if _CURRENT is not None else init_distributed()


def shutdown() -> None:
    """Leave the process group (no-op for a plain single process)."""
    global _CURRENT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = None


def log0(*args: Any, env: DistEnv | None = None) -> None:
    """``print`` on rank 0 only (flushed, so torchrun's interleaved output stays readable)."""
    if (env or current_env()).is_main:
        print(*args, flush=True)


class Heartbeat:
    """Per-rank "started step N" marks in the job's key-value store (torchrun's TCPStore).

    The store lives in the torchrun agent, not in a worker, so it outlives a dead rank.
    """

    PREFIX = "sitehawk/heartbeat/"

    def __init__(self, env: DistEnv):
        self.env = env
        self.store: Any = None
        if env.distributed:
            from torch.distributed.distributed_c10d import _get_default_store

            self.store = _get_default_store()

    def beat(self, step: int) -> None:
        """Record that this rank starts ``step``."""
        if self.store is not None:
            self.store.set(f"{self.PREFIX}{self.env.rank}", str(step))

    def last_steps(self) -> dict[int, int]:
        """Last step each rank started (-1: never reported); empty for a single process."""
        return {r: int(v) if v is not None else -1 for r, v in self._read("").items()}

    def roll_call(self, step: int, wait_s: float) -> list[int]:
        """Ranks that do not answer within ``wait_s``: every surviving rank marks itself alive
        when its collective fails, so the silent ones are the dead or stuck ones."""
        if self.store is None:
            return []
        import time

        tag = f"alive/{step}/"
        self.store.set(f"{self.PREFIX}{tag}{self.env.rank}", "1")
        deadline = time.monotonic() + wait_s
        while True:
            silent = [r for r, v in self._read(tag).items() if v is None]
            if not silent or time.monotonic() >= deadline:
                return silent
            time.sleep(0.2)

    def _read(self, tag: str) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for r in range(self.env.world_size):
            key = f"{self.PREFIX}{tag}{r}"
            try:
                out[r] = self.store.get(key).decode() if self.store.check([key]) else None
            except Exception:  # the store itself is gone: the agent is tearing the job down
                out[r] = None
        return out


def describe_failure(env: DistEnv, step: int, heartbeat: Heartbeat, exc: BaseException) -> str:
    """One message for a failed collective: which ranks are gone, at which step, and why.

    A first line goes to stderr at once: the local torchrun agent may stop this rank while the
    roll call waits (it has seen the dead rank exit), and the failure must still be on record.
    """
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(
        f"ERROR: rank {env.rank}/{env.world_size}: collective failed at step {step}: "
        f"{type(exc).__name__}: {first} — checking which ranks are alive",
        file=sys.stderr,
        flush=True,
    )
    silent = heartbeat.roll_call(step, wait_s=min(5.0, env.timeout_s / 4))
    started = heartbeat.last_steps()
    if silent:
        who = ", ".join(f"rank {r} (last started step {started.get(r, -1)})" for r in silent)
        cause = f"{who} did not answer: dead or stuck"
    else:
        cause = "a peer rank died or became unreachable"
    return (
        f"rank {env.rank}/{env.world_size}: collective failed at step {step} "
        f"(process-group timeout {env.timeout_s:.0f} s): {cause}. "
        f"Underlying error: {type(exc).__name__}: {first}"
    )


class RankFailure(RuntimeError):
    """A collective failed because another rank died or stopped answering."""


def exit_on_failure(exc: RankFailure) -> NoReturn:
    """Print the failure on stderr and exit non-zero so torchrun ends the job at once."""
    print(f"ERROR: {exc}", file=sys.stderr, flush=True)
    os._exit(1)  # skip destroy_process_group: it would wait on the dead peer


@contextmanager
def distributed_job(timeout_s: float | None = None) -> Iterator[DistEnv]:
    """One training command's process group: joined on entry, left on a normal exit.

    Under torchrun a :class:`RankFailure` ends this rank at once with the message naming the
    dead rank (no clean-up that would wait on it); a plain process is a world of one.
    """
    env = init_distributed(timeout_s)
    try:
        yield env
    except RankFailure as exc:
        exit_on_failure(exc)
    shutdown()
