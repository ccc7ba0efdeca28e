"""Run untrusted programs against their tests in an operating-system sandbox.

Model-generated programs label HumanEval samples and compute the `code_tests` rule reward, so a
program that can make itself count as passed is a reward hack. Two layers keep the verdict honest:

**Isolation by the operating system** (bubblewrap, `bwrap`): each run gets new user, PID, network,
IPC, UTS and cgroup namespaces, a read-only view of the system libraries and of the Python
installation only (not the project, not the home directory, not `/etc`), a private writable
tmpfs as `/tmp` and working directory, no capabilities, a new session (no terminal injection), and
dies with its parent. Resource limits: address space, CPU seconds, file size, open files, process
count, no core files. A wall-clock timeout kills the whole PID namespace. Inside, the program's
process also runs under a seccomp filter that refuses new processes, exec, ptrace, sockets and
signals through pidfds (`nexus/_sandbox_runner.py`).

**The verdict comes from outside the program**: the tests run in a separate runner process that
the program cannot ptrace or read; every call from the tests into the program returns plain data
rebuilt by the runner (exact built-in types, so the expected value's `__eq__` decides each
comparison); the tests never exist in a file the program can see; and the runner reports
`{nonce, status}` on a descriptor the program never had, with a per-run random nonce. Exiting
early, exiting 0, rewriting files, patching hooks, overriding `__eq__` or killing the runner all
end as `failed`.

The contract this gives the tests: they exchange plain data with the program (None, bool, int,
float, complex, str, bytes and lists, tuples, dicts, sets of those); a function that returns an
object of its own class is a failure, as are tests that pass functions into the program.

Without bubblewrap, `run_program` refuses (`SandboxUnavailable`, saying how to install it) unless
the caller passes `allow_unsandboxed=True`, which keeps the two-process verdict, the limits and the
seccomp filter but not the namespaces, and warns on every run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("_sandbox_runner.py")
# Bumped whenever what counts as a pass changes, so cached execution labels are not reused across it.
EXECUTOR_VERSION = "bwrap-runner-1"
INSTALL_HINT = ("install bubblewrap: `apt-get install bubblewrap` (Debian/Ubuntu), `dnf install bubblewrap` "
                "(Fedora/RHEL) or `pacman -S bubblewrap` (Arch); it also needs unprivileged user namespaces "
                "(`sysctl kernel.unprivileged_userns_clone=1` on older Debian kernels) unless run as root")


class SandboxUnavailable(RuntimeError):
    """No working OS sandbox on this machine, and the caller did not allow running without one."""


@dataclass
class ExecutionResult:
    """What one run gives: whether the tests passed, why not, and the captured output."""

    passed: bool
    status: str  # "passed", "failed" (an exception, an early exit, a refused action), "timeout"
    error: str
    stdout: str
    stderr: str
    seconds: float
    sandboxed: bool = True


def _python_roots() -> list[str]:
    """Directories the sandbox needs from the host to run the base interpreter: its installation
    (the standard library; never a virtual environment's site-packages) and the binary's folder."""
    interpreter = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    roots = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix), os.path.dirname(interpreter)}
    return sorted(r for r in roots if not r.startswith("/usr/"))


def base_interpreter() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def bwrap_command(program_dir: str, limits_json: str, verdict_fd: int) -> list[str]:
    """The bubblewrap command line of one run (the runner reads its request from stdin)."""
    cmd = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "sandbox",
           "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    if os.path.isfile("/etc/ld.so.cache"):
        cmd += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for root in _python_roots():
        cmd += ["--ro-bind", root, root]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
            "--ro-bind", str(RUNNER), "/nexus/runner.py", "--ro-bind", program_dir, "/nexus/program",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
            "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8", "--remount-ro", "/", "--"]
    return cmd + [base_interpreter(), "-I", "-S", "-B", "-X", "utf8", "/nexus/runner.py", str(verdict_fd),
                  limits_json, "/nexus/program/program.py"]


@functools.lru_cache(maxsize=1)
def sandbox_available() -> tuple[bool, str]:
    """(works, why not): bubblewrap is installed and can build the namespaces of a run here."""
    if sys.platform != "linux":
        return False, f"bubblewrap runs on Linux only (this is {sys.platform})"
    if shutil.which("bwrap") is None:
        return False, "the `bwrap` command was not found"
    with tempfile.TemporaryDirectory(prefix="nexus-probe-") as tmp:
        cmd = bwrap_command(tmp, "{}", 1)
        cmd = cmd[:cmd.index("--") + 1] + [base_interpreter(), "-I", "-S", "-c", "import os; print(os.getuid())"]
        try:
            probe = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bwrap failed to start: {exc}"
    if probe.returncode != 0 or probe.stdout.strip() != "65534":
        return False, f"bwrap could not create the sandbox: {probe.stderr.strip()[-500:] or probe.returncode}"
    return True, ""


def _tail(path: Path, limit: int) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("\n[... output cut at %d bytes]" % limit if len(data) > limit else "")


def _read_verdict(fd: int, limit: int = 1 << 16) -> bytes:
    data = b""
    while len(data) < limit:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            break
        chunk = os.read(fd, limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _send_and_wait(proc: subprocess.Popen, request: bytes, deadline: float) -> bool:
    """Write the runner's request, close its stdin and wait for the exit until `deadline`
    (perf_counter time); False on timeout. Waits on a pidfd where there is one, which wakes at the
    exit itself rather than at the next poll of `Popen.wait(timeout)`."""
    try:
        proc.stdin.write(request)
        proc.stdin.close()
    except (BrokenPipeError, OSError):  # the runner is gone already; its exit status tells
        pass
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:
        try:
            proc.wait(timeout=max(deadline - time.perf_counter(), 0))
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([pidfd], [], [], max(deadline - time.perf_counter(), 0))
    finally:
        os.close(pidfd)
    return bool(ready)


def _sandbox_or_refuse(allow_unsandboxed: bool) -> bool:
    """True where the OS sandbox works; else raise `SandboxUnavailable`, or warn when allowed."""
    works, why = sandbox_available()
    if not works and not allow_unsandboxed:
        raise SandboxUnavailable(f"refusing to run untrusted code without an OS sandbox: {why}. To get one, "
                                 f"{INSTALL_HINT}. To run it anyway on this machine (unsafe), pass "
                                 "allow_unsandboxed=True.")
    if not works:
        message = f"running untrusted code WITHOUT an OS sandbox ({why}): it can read and write your files"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logger.warning(message)
    return works


def _launch(host: Path, sandboxed: bool, limits: dict, verdict_w: int) -> tuple[list[str], str]:
    """The command and working directory of one run: bubblewrap, or the bare runner."""
    program = host / "program" / "program.py"
    if sandboxed:
        return bwrap_command(str(program.parent), json.dumps(limits), verdict_w), str(host)
    scratch = host / "scratch"
    scratch.mkdir()
    return [base_interpreter(), "-I", "-S", "-B", "-X", "utf8", str(RUNNER), str(verdict_w), json.dumps(limits),
            str(program)], str(scratch)


def _result(raw: bytes, nonce: str, code: int | None, timed_out: bool, timeout: float,
            stdout: str, stderr: str, seconds: float, sandboxed: bool) -> ExecutionResult:
    """The verdict of one run: passed only on the runner's message with this run's nonce."""
    def result(passed: bool, status: str, error: str) -> ExecutionResult:
        return ExecutionResult(passed, status, error, stdout, stderr, seconds, sandboxed)

    if timed_out:
        return result(False, "timeout", f"time limit of {timeout} s exceeded")
    try:
        verdict = json.loads(raw.decode())
    except (ValueError, UnicodeDecodeError):
        verdict = None
    if not isinstance(verdict, dict) or not secrets.compare_digest(str(verdict.get("nonce", "")), nonce):
        if code is not None and code < 0 and -code in (signal.SIGXCPU, signal.SIGKILL) and seconds >= timeout * 0.9:
            return result(False, "timeout", f"CPU limit of {timeout} s exceeded")
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return result(False, "failed", f"the test runner gave no verdict ({lines[-1] if lines else f'exit code {code}'})")
    if verdict.get("status") == "passed":
        return result(True, "passed", "")
    return result(False, "failed", str(verdict.get("error", ""))[:2000] or "failed")


def run_program(program: str, tests: str, timeout: float = 5.0, memory_mb: int = 1024,
                max_output: int = 10_000, *, allow_unsandboxed: bool = False) -> ExecutionResult:
    """Execute `program`, then `tests` against it (Python source), in the sandbox.

    Never raises for anything the program does; raises `SandboxUnavailable` when there is no OS
    sandbox here and `allow_unsandboxed` is False. The result is `passed` only when the runner
    finished the tests and reported so with this run's nonce.
    """
    if not isinstance(program, str) or not isinstance(tests, str):
        raise TypeError("run_program: program and tests must be str")
    if not timeout > 0 or memory_mb < 16 or max_output < 0:
        raise ValueError(f"run_program: need timeout > 0 (got {timeout}), memory_mb >= 16 (got {memory_mb}) "
                         f"and max_output >= 0 (got {max_output})")
    sandboxed = _sandbox_or_refuse(allow_unsandboxed)
    limits = {"RLIMIT_AS": memory_mb * 2**20, "RLIMIT_FSIZE": max(max_output * 4, 2**20), "RLIMIT_CORE": 0,
              "RLIMIT_NOFILE": 64, "RLIMIT_CPU": int(timeout) + 1}
    if sandboxed:  # counted per user namespace inside the sandbox; outside it would count all the user's processes
        limits["RLIMIT_NPROC"] = 64
    nonce = secrets.token_hex(16)
    request = json.dumps({"nonce": nonce, "tests": tests}).encode("utf-8", errors="surrogatepass")
    with tempfile.TemporaryDirectory(prefix="nexus-exec-") as tmp:
        host = Path(tmp)
        (host / "program").mkdir()
        (host / "program" / "program.py").write_text(program, encoding="utf-8", errors="surrogatepass")
        verdict_r, verdict_w = os.pipe()
        cmd, cwd = _launch(host, sandboxed, limits, verdict_w)
        env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        start = time.perf_counter()
        with open(host / "stdout.txt", "wb") as out, open(host / "stderr.txt", "wb") as err:
            try:
                proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                        pass_fds=(verdict_w,), start_new_session=True)
            finally:
                os.close(verdict_w)
            try:
                timed_out = not _send_and_wait(proc, request, start + timeout)
            finally:
                try:  # the whole group; with bwrap this kills the namespace's init and so everything in it
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        seconds = time.perf_counter() - start
        raw = _read_verdict(verdict_r)
        os.close(verdict_r)
        stdout, stderr = _tail(host / "stdout.txt", max_output), _tail(host / "stderr.txt", max_output)
    return _result(raw, nonce, proc.returncode, timed_out, timeout, stdout, stderr, seconds, sandboxed)
