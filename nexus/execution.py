"""Run untrusted programs against their tests in a sandboxed subprocess (issue 4).

Each run gets a fresh temporary directory as its working directory and a child Python
process (isolated mode) with:

- a wall-clock time limit (the whole process group is killed when it expires: infinite loops);
- an address-space limit (`RLIMIT_AS`) and a file-size limit (`RLIMIT_FSIZE`: output floods);
- an audit hook (PEP 578, installed before the program runs and impossible to remove) that
  refuses network sockets, new processes (fork, exec, spawn, subprocess, os.system: fork bombs),
  `ctypes`, and any file opened for writing outside the temporary directory or for reading
  outside it and the Python installation;
- stdout and stderr captured to files, kept to `max_output` bytes each.

A run passes only if the harness reaches the end of the tests and writes its marker, so
`sys.exit(0)` or `os._exit(0)` before the tests cannot fake a pass. This is a guard for model
samples on one's own machine, not a security boundary against a determined attacker (that
needs a container or a VM).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASS_MARKER = "__nexus_tests_passed__"

# The child's preamble: limits and the audit hook come first, then the program and its tests.
_HARNESS = r'''
import os, sys
_ALLOWED_READ = tuple(os.path.realpath(p) for p in {json_read_roots})
_SANDBOX = os.path.realpath({json_sandbox})
_REFUSED = {{"socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "os.fork", "os.forkpty",
            "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "os.kill", "os.killpg",
            "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "os.chdir", "os.chroot", "os.setuid", "pty.spawn"}}
_WRITES = {{"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.truncate",
           "os.chmod", "os.chown", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}}

def _inside(path, roots):
    try:
        real = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return any(real == r or real.startswith(r + os.sep) for r in roots)

def _guard(event, args):
    if event in _REFUSED:
        raise PermissionError(f"sandbox: {{event}} is not allowed")
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
        if not _inside(args[0], (_SANDBOX,) if writing else _ALLOWED_READ + (_SANDBOX,)):
            raise PermissionError(f"sandbox: {{'writing' if writing else 'reading'}} {{args[0]!r}} is outside the sandbox")
    elif event in _WRITES:
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        if not all(_inside(p, (_SANDBOX,)) for p in paths):
            raise PermissionError(f"sandbox: {{event}} outside the sandbox")

sys.addaudithook(_guard)
_ns = {{"__name__": "__main__"}}
exec(compile(open("program.py").read(), "program.py", "exec"), _ns)
exec(compile(open("tests.py").read(), "tests.py", "exec"), _ns)
with open("result.txt", "w") as _f:
    _f.write({json_marker})
'''


@dataclass
class ExecutionResult:
    """What one run gives: whether the tests passed, why not, and the captured output."""

    passed: bool
    status: str  # "passed", "failed" (an exception or a non-zero exit), "timeout"
    error: str
    stdout: str
    stderr: str
    seconds: float


def _limits(memory_bytes: int, file_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _tail(path: Path, limit: int) -> str:
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("\n[... output cut at %d bytes]" % limit if len(data) > limit else "")


def run_program(program: str, tests: str, timeout: float = 5.0, memory_mb: int = 1024,
                max_output: int = 10_000) -> ExecutionResult:
    """Execute `program` then `tests` (Python source) in a sandboxed child; never raises for
    anything the program does."""
    with tempfile.TemporaryDirectory(prefix="nexus-exec-") as tmp:
        sandbox = Path(tmp)
        (sandbox / "program.py").write_text(program)
        (sandbox / "tests.py").write_text(tests)
        read_roots = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, *[p for p in sys.path if p]})
        harness = _HARNESS.format(json_read_roots=json.dumps(read_roots), json_sandbox=json.dumps(str(sandbox)),
                                  json_marker=json.dumps(PASS_MARKER))
        (sandbox / "harness.py").write_text(harness)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "HOME": str(sandbox), "TMPDIR": str(sandbox)}
        start = time.perf_counter()
        with open(sandbox / "stdout.txt", "wb") as out, open(sandbox / "stderr.txt", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-I", "-B", "harness.py"], cwd=sandbox, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    preexec_fn=_limits(memory_mb * 2**20, max(max_output * 4, 2**20)))
            try:
                code = proc.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:  # the whole group: anything the program managed to start goes too
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        seconds = time.perf_counter() - start
        stdout, stderr = _tail(sandbox / "stdout.txt", max_output), _tail(sandbox / "stderr.txt", max_output)
        marker = (sandbox / "result.txt").read_text() if (sandbox / "result.txt").is_file() else ""
        if timed_out:
            return ExecutionResult(False, "timeout", f"time limit of {timeout} s exceeded", stdout, stderr, seconds)
        if code == 0 and marker == PASS_MARKER:
            return ExecutionResult(True, "passed", "", stdout, stderr, seconds)
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        error = lines[-1] if lines else (f"exit code {code}" if code else "exited before the tests finished")
        return ExecutionResult(False, "failed", error, stdout, stderr, seconds)
