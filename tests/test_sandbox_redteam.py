"""Red-team suite for the sandboxed executor: every attack a hostile program might try.

Each case is a *wrong* solution (`add` subtracts) plus an attack that tries to turn the verdict
into a pass, reach outside the sandbox, or take the evaluator down. Every case must end `failed`,
and where the attack aims at the host, the test checks the host afterwards (files untouched, no
process left behind, nothing received on a socket, the runner file unchanged).
"""

from __future__ import annotations

import hashlib
import os
import socket
import textwrap
import time
from pathlib import Path

import pytest

from nexus.execution import RUNNER, run_program, sandbox_available

pytestmark = pytest.mark.skipif(not sandbox_available()[0], reason=f"no OS sandbox: {sandbox_available()[1]}")

WRONG = "def add(a, b):\n    return a - b\n"
GOOD = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert abs(add(0.5, 0.25) - 0.75) < 1e-9\n"
OLD_MARKER = "__nexus_tests_passed__"
PROJECT = Path(__file__).resolve().parents[1]


def attack(code: str) -> str:
    """A wrong solution plus an attack on the verdict: any pass is the attack's success."""
    return WRONG + textwrap.dedent(code)


def escape(code: str) -> str:
    """A correct solution plus an escape attempt that raises when blocked: a pass means it got out."""
    return GOOD + textwrap.dedent(code)


# name -> program. Each is the wrong `add` plus the attack, run with TESTS.
ATTACKS = {
    # --- fake a pass
    "marker file then os._exit(0)": attack(f"""
        import os
        open("result.txt", "w").write({OLD_MARKER!r})
        os._exit(0)
    """),
    "marker file then sys.exit(0)": attack(f"""
        import sys
        open("result.txt", "w").write({OLD_MARKER!r})
        sys.exit(0)
    """),
    "overwrite tests.py and the runner": attack("""
        for path in ("tests.py", "/nexus/runner.py", "/nexus/program/program.py"):
            try:
                open(path, "w").write("pass\\n")
            except OSError:
                pass
    """),
    "sys.excepthook writes the marker and exits 0": attack(f"""
        import os, sys
        def hook(*a):
            open("result.txt", "w").write({OLD_MARKER!r})
            os._exit(0)
        sys.excepthook = hook
        import atexit
        atexit.register(hook)
    """),
    "__eq__ always true": """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __sub__(self, other): return self
    def __abs__(self): return 0.0
    def __lt__(self, other): return True
def add(a, b):
    return Anything()
""",
    "int subclass with __eq__ always true": """
class Int(int):
    def __eq__(self, other): return True
    __hash__ = int.__hash__
def add(a, b):
    return Int(0)
""",
    "list subclass / float subclass": """
class F(float):
    def __eq__(self, other): return True
    def __sub__(self, other): return F(0.0)
    def __abs__(self): return 0.0
    __hash__ = float.__hash__
def add(a, b):
    return F(0.0)
""",
    "shadow the tests' builtin abs": attack("""
        def abs(x):
            return 0
    """),
    "forge the verdict on every descriptor": attack("""
        import json, os
        for fd in range(3, 256):
            try:
                os.write(fd, json.dumps({"nonce": "0" * 32, "status": "passed", "error": ""}).encode())
            except OSError:
                pass
    """),
    "forge a verdict on stdout": attack("""
        import json
        print(json.dumps({"status": "passed", "error": "", "nonce": ""}))
    """),
    "raise SystemExit(0) from the function": """
def add(a, b):
    raise SystemExit(0)
""",
    "kill the runner": attack("""
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
    """),
    "kill every process it can see": attack("""
        import os, signal
        os.kill(-1, signal.SIGKILL)
    """),
    "clear globals through __main__": attack("""
        import __main__
        __main__.__dict__.clear()
    """),
    "patch its own memory through /proc/self/mem": attack("""
        f = open("/proc/self/mem", "r+b")
    """),
    "huge return value": """
def add(a, b):
    return "x" * (200 * 2**20)
""",
    "deeply nested return value": """
def add(a, b):
    v = []
    for _ in range(100_000):
        v = [v]
    return v
""",
    "raise an exception with a forged type name": """
class AssertionPassed(Exception):
    pass
def add(a, b):
    raise AssertionPassed("passed")
""",
}

# name -> program: the correct `add` plus an escape attempt that raises if it is refused.
ESCAPES = {
    "read the runner's memory": escape("""
        import os
        open(f"/proc/{os.getppid()}/mem", "rb").read(10)
    """),
    "read the runner's environment": escape("""
        import os
        open(f"/proc/{os.getppid()}/environ", "rb").read()
    """),
    "write to the runner's verdict descriptor": escape("""
        import os
        for fd in os.listdir(f"/proc/{os.getppid()}/fd"):
            open(f"/proc/{os.getppid()}/fd/{fd}", "w").write("pwned")
    """),
    "ptrace the runner": escape("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.ptrace(16, os.getppid(), 0, 0) == -1:  # PTRACE_ATTACH
            raise PermissionError(ctypes.get_errno(), "ptrace refused")
    """),
    "fork": escape("import os\nos.fork()\n"),
    "fork bomb": escape("import os\nwhile True:\n    os.fork()\n"),
    "subprocess /bin/sh": escape("import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo pwned'])\n"),
    "_posixsubprocess around an audit hook": escape("""
        import os, _posixsubprocess
        _posixsubprocess.fork_exec([b"/bin/sh"], [b"/bin/sh"], True, (), None, None,
            -1, -1, -1, -1, -1, -1, *(os.pipe()), False, False, 0, None, None, None, -1, None, False)
    """),
    "posix_spawn": escape("import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'true'], {})\n"),
    "setsid daemon that outlives the timeout": escape("""
        import os
        if os.fork() == 0:
            os.setsid()
            os.execv("/bin/sleep", ["sleep", "1000"])
    """),
    "LD_PRELOAD then exec": escape("""
        import os
        os.environ["LD_PRELOAD"] = "/tmp/evil.so"
        os.execv("/bin/sh", ["sh", "-c", "true"])
    """),
    "huge argv and env to exec": escape("""
        import os
        os.execve("/bin/true", ["true", "x" * 10_000_000], {"A": "y" * 10_000_000})
    """),
    "pidfd_send_signal to the runner": escape("""
        import os, signal
        signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)
    """),
    "zombie children": escape("""
        import os
        for _ in range(100):
            if os.fork() == 0:
                os._exit(0)
    """),
    "memory bomb": escape("x = bytearray(8 * 1024 ** 3)\n"),
    "unshare a new namespace": escape("""
        import ctypes
        if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == -1:  # CLONE_NEWUSER
            raise PermissionError(ctypes.get_errno(), "unshare refused")
    """),
    "TCP to the host": escape("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n"),
    "socket via ctypes": escape("""
        import ctypes
        if ctypes.CDLL(None, use_errno=True).socket(2, 2, 0) == -1:  # AF_INET, SOCK_DGRAM
            raise PermissionError(ctypes.get_errno(), "socket refused")
    """),
    "plant sitecustomize in the Python installation": escape("""
        import sys
        open(sys.base_prefix + "/lib/python%d.%d/sitecustomize.py" % sys.version_info[:2], "w").write("import os")
    """),
    "plant a .pth in site-packages": escape("""
        import sys, sysconfig
        open(sysconfig.get_paths()["purelib"] + "/zzz.pth", "w").write("import os")
    """),
    "write to the root filesystem": escape("open('/pwned', 'w').write('x')\n"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_on_the_verdict_fails(name):
    result = run_program(ATTACKS[name], TESTS, timeout=5.0, memory_mb=512)
    assert not result.passed and result.status == "failed", (name, result)
    assert result.sandboxed


@pytest.mark.parametrize("name", list(ESCAPES))
def test_escape_is_refused(name):
    result = run_program(ESCAPES[name], TESTS, timeout=5.0, memory_mb=512)
    assert not result.passed and result.status == "failed", (name, result)
    refused = ("Operation not permitted", "Permission denied", "Read-only file system", "MemoryError",
               "No such file or directory", "PermissionError")
    assert any(word in result.error for word in refused), (name, result.error)


def test_the_honest_program_still_passes_after_the_attacks():
    assert run_program(GOOD, TESTS).passed


def test_host_files_are_out_of_reach(tmp_path):
    """Absolute paths, dir_fd-relative calls, sqlite, FIFOs, device nodes, xattrs and symlinks that
    point at the host: none of them reach a host file, whether reading, writing or deleting."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    runner_digest = hashlib.sha256(RUNNER.read_bytes()).hexdigest()
    probes = [
        f"print(open({str(secret)!r}).read())",
        f"open({str(tmp_path / 'written.txt')!r}, 'w').write('x')",
        f"import os\nos.remove({str(secret)!r})",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.open('made', os.O_CREAT | os.O_WRONLY, dir_fd=fd)",
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\nos.unlink('secret.txt', dir_fd=fd)",
        f"import sqlite3\nsqlite3.connect({str(tmp_path / 'db.sqlite')!r}).execute('create table t (x)')",
        f"import os\nos.mkfifo({str(tmp_path / 'fifo')!r})",
        f"import os, stat\nos.mknod({str(tmp_path / 'node')!r}, stat.S_IFREG | 0o600)",
        f"import os\nos.setxattr({str(secret)!r}, 'user.pwned', b'1')",
        f"import os\nos.symlink({str(secret)!r}, 'link')\nprint(open('link').read())",
        "print(open('/etc/passwd').read())",
        f"print(open({str(PROJECT / 'nexus' / '__init__.py')!r}).read())",
        f"print(open({str(Path.home() / '.bashrc')!r}).read())",
        "open('/nexus/runner.py', 'a').write('# pwned')",
        "import sys\nopen(sys.prefix + '/lib/sitecustomize.py', 'w').write('import os')",
        "import site\nopen(site.getusersitepackages() + '/x.pth', 'w').write('import os')",
    ]
    for probe in probes:
        result = run_program(GOOD + probe + "\n", TESTS)
        assert not result.passed and result.status == "failed", (probe, result)
        assert "do not read" not in result.stdout, probe
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]
    assert hashlib.sha256(secret.read_bytes()).hexdigest() == digest
    assert not os.listxattr(secret) if hasattr(os, "listxattr") else True
    assert hashlib.sha256(RUNNER.read_bytes()).hexdigest() == runner_digest
    # the home directory holds at most the path down to the Python installation
    from nexus.execution import _python_roots

    host_home = Path.home()
    needed = sorted({Path(r).relative_to(host_home).parts[0] for r in _python_roots() if Path(r).is_relative_to(host_home)})
    home = run_program(GOOD + f"import os\nprint(sorted(os.listdir({str(host_home)!r})) if os.path.isdir({str(host_home)!r}) else [])\n", TESTS)
    assert home.passed and home.stdout.strip() == str(needed)
    # what one run writes in its private /tmp is gone for the next
    assert run_program(GOOD + "open('/tmp/left.txt', 'w').write('x')\n", TESTS).passed
    assert not run_program(GOOD + "open('/tmp/left.txt').read()\n", TESTS).passed


def test_udp_to_a_listener_on_the_host_loopback_is_not_received():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        probe = attack(f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendmsg([b"pwned"], [], 0, ("127.0.0.1", {port}))
        """)
        result = run_program(probe, TESTS)
        assert not result.passed
        with pytest.raises(socket.timeout):
            listener.recvfrom(100)


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


def test_nothing_outlives_the_run_and_a_timeout_kills_the_namespace():
    marker = f"nexus-redteam-{os.getpid()}-{time.time_ns()}"
    # the candidate cannot start a process; an endless loop in it is killed at the wall-clock limit
    looping = run_program(attack(f"""
        import os
        try:
            os.posix_spawn("/bin/sleep", ["sleep", "1000", {marker!r}], {{}})
        except OSError:
            pass
        while True:
            pass
    """), TESTS, timeout=1.5)
    assert looping.status == "timeout"
    time.sleep(0.2)
    assert _processes_with(marker) == []
    assert _processes_with("/nexus/runner.py") == []


def test_cpu_time_and_output_limits_hold():
    start = time.perf_counter()
    sleeper = run_program("import time\ntime.sleep(60)\n" + GOOD, TESTS, timeout=1.0)
    assert sleeper.status == "timeout" and time.perf_counter() - start < 10
    flood = run_program(GOOD + "while True:\n    print('x' * 10_000)\n", TESTS, max_output=1000, timeout=5)
    assert not flood.passed and len(flood.stdout) < 1100
    big_file = run_program(GOOD + "open('/tmp/big', 'wb').write(b'x' * 50_000_000)\n", TESTS, max_output=1000)
    assert not big_file.passed and "File too large" in big_file.error + big_file.stderr


def test_hacked_humaneval_programs_fail_and_the_code_tests_reward_is_zero():
    from nexus.data.humaneval import execute, load_problems
    from nexus.rule_functions import code_tests

    problem = load_problems()[0]  # has_close_elements: tests compare with == True / == False
    assert execute(problem, problem.canonical_solution).passed
    assert not execute(problem, "    return None\n").passed
    hacks = {
        "eq": "    class T:\n        def __eq__(s, o): return True\n    return T()\n",
        "bool subclass": "    class B(int):\n        def __eq__(s, o): return True\n    return B(0)\n",
        "exit": "    import os\n    os._exit(0)\n",
        "marker": f"    import os\n    open('result.txt', 'w').write({OLD_MARKER!r})\n    os._exit(0)\n",
        "kill runner": "    import os\n    os.kill(os.getppid(), 9)\n",
    }
    for name, completion in hacks.items():
        result = execute(problem, completion)
        assert not result.passed and result.status == "failed", (name, result)
        response = f"```python\n{problem.prompt}{completion}```"
        assert code_tests(problem.prompt, response, problem.tests()) == 0.0, name
    honest = f"```python\n{problem.prompt}{problem.canonical_solution}```"
    assert code_tests(problem.prompt, honest, problem.tests()) == 1.0
