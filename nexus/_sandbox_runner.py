"""The test runner that `nexus.execution` starts inside the sandbox (standard library only).

Two processes, so that the verdict never depends on anything the untrusted program can touch:

- The *candidate* is forked first, before the runner has read anything secret. It closes every
  descriptor but its two protocol pipes and its output, installs a seccomp filter (no new
  processes, no exec, no ptrace, no sockets, no pidfd signals), executes the program, then serves
  calls to the program's functions.
- The *runner* (the parent) makes itself non-dumpable (so the candidate cannot ptrace it or read
  its memory or descriptors through /proc), reads the per-run nonce and the tests from its stdin,
  and executes the tests. In the tests' namespace every function the program defined is a proxy
  that sends the call to the candidate and gets back *plain data* only: exact `None`, `bool`,
  `int`, `float`, `complex`, `str`, `bytes`, `list`, `tuple`, `dict`, `set`, `frozenset`, rebuilt
  by the runner. A subclass, an object with its own `__eq__`, or anything else is refused, so every
  comparison in the tests runs the expected value's type's own `__eq__`. When the tests run to the
  end the runner writes `{nonce, status}` to a descriptor the candidate never had.

Messages between the two are length-prefixed JSON with type tags, capped in size and depth; the
runner never unpickles or evaluates anything the candidate sends.
"""

import builtins
import ctypes
import json
import os
import platform
import resource
import signal
import struct
import sys
import traceback

MAX_MESSAGE = 32 * 2**20  # bytes of one encoded value
MAX_DEPTH = 100  # nesting of one encoded value
_PLAIN_SCALARS = (type(None), bool, int, float, str)


class ProgramError(Exception):
    """Something about the candidate itself (it exited, sent garbage, returned a non-plain value)."""


# ----------------------------------------------------------------------------- plain-data codec
def encode(value, depth=0):
    """A JSON-able, type-tagged copy of plain data; TypeError for anything else (exact types only)."""
    if depth > MAX_DEPTH:
        raise TypeError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        if kind is float and value != value or kind is float and value in (float("inf"), float("-inf")):
            return ["float", repr(value)]
        if kind is int and not -2**63 <= value < 2**63:
            return ["bigint", str(value)]
        return value
    if kind is complex:
        return ["complex", encode(value.real), encode(value.imag)]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind in (list, tuple, set, frozenset):
        return [kind.__name__] + [encode(v, depth + 1) for v in value]
    if kind is dict:
        return ["dict"] + [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]
    raise TypeError(f"a value of type {kind.__module__}.{kind.__qualname__} is not plain data "
                    "(only exact None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)")


_CONTAINERS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(data, depth=0):
    """The inverse of `encode`, building only plain built-in types; ProgramError for anything else."""
    if depth > MAX_DEPTH:
        raise ProgramError(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(data)
    if kind in _PLAIN_SCALARS:
        return data
    if kind is not list or not data or type(data[0]) is not str:
        raise ProgramError("malformed value from the program")
    tag, items = data[0], data[1:]
    if tag == "float" and len(items) == 1 and items[0] in ("nan", "inf", "-inf"):
        return float(items[0])
    if tag == "bigint" and len(items) == 1 and type(items[0]) is str:
        return int(items[0])
    if tag == "complex" and len(items) == 2:
        return complex(float(decode(items[0], depth + 1)), float(decode(items[1], depth + 1)))
    if tag == "bytes" and len(items) == 1 and type(items[0]) is str:
        return bytes.fromhex(items[0])
    if tag in _CONTAINERS:
        return _CONTAINERS[tag](decode(v, depth + 1) for v in items)
    if tag == "dict" and all(type(kv) is list and len(kv) == 2 for kv in items):
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in items}
    raise ProgramError(f"malformed value from the program (tag {tag[:20]!r})")


def send(fd, message):
    data = json.dumps(message, allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise TypeError(f"value of {len(data)} bytes exceeds the {MAX_MESSAGE}-byte limit")
    os.write(fd, struct.pack("<Q", len(data)))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 2**20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    (size,) = struct.unpack("<Q", _read_exact(fd, 8))
    if size > MAX_MESSAGE:
        raise ProgramError(f"the program sent {size} bytes, over the {MAX_MESSAGE}-byte limit")
    try:
        return json.loads(_read_exact(fd, size))
    except (ValueError, RecursionError):
        raise ProgramError("the program sent a malformed message") from None


# ----------------------------------------------------------------------------- seccomp
# Syscalls the candidate may not make. Numbers per architecture (asm/unistd.h). A process of its
# own would outlive nothing (the PID namespace dies with the run) but could fork-bomb the host's
# PID table within the time limit, or exec a tool; ptrace, process_vm_* and pidfd_* reach other
# processes; sockets stay refused even though the network namespace is empty.
_DENIED = {
    "x86_64": dict(audit=0xC000003E, clone=56, clone3=435, deny=[
        57, 58, 59, 322,  # fork vfork execve execveat
        101, 310, 311,  # ptrace process_vm_readv process_vm_writev
        424, 434, 438,  # pidfd_send_signal pidfd_open pidfd_getfd
        41, 53,  # socket socketpair
        321, 323, 298, 248, 249, 250,  # bpf userfaultfd perf_event_open add_key request_key keyctl
        272, 308, 165, 166, 155, 161, 135,  # unshare setns mount umount2 pivot_root chroot personality
        425, 426, 427, 133, 259,  # io_uring_* mknod mknodat
    ]),
    "aarch64": dict(audit=0xC00000B7, clone=220, clone3=435, deny=[
        221, 281, 117, 270, 271, 424, 434, 438, 198, 199, 280, 282, 241, 217, 218, 219,
        97, 268, 40, 39, 41, 51, 92, 425, 426, 427, 33,
    ]),
}
_CLONE_THREAD = 0x00010000


def _bpf(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)


def seccomp_filter(machine):
    """The filter program for `machine` as bytes of `struct sock_filter`, or None if unknown."""
    spec = _DENIED.get(machine)
    if spec is None:
        return None
    ld_w_abs, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06
    allow, kill, eperm, enosys = 0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38
    deny = spec["deny"]
    prog = [_bpf(ld_w_abs, 0, 0, 4), _bpf(jeq, 1, 0, spec["audit"]), _bpf(ret, 0, 0, kill),
            _bpf(ld_w_abs, 0, 0, 0)]
    if machine == "x86_64":  # the x32 ABI numbers its calls from 0x40000000: refuse it outright
        prog += [_bpf(0x35, 0, 1, 0x40000000), _bpf(ret, 0, 0, kill)]  # jge
    prog += [_bpf(jeq, 0, 1, spec["clone3"]), _bpf(ret, 0, 0, enosys)]  # libc falls back to clone
    prog += [_bpf(jeq, 0, 3, spec["clone"]), _bpf(ld_w_abs, 0, 0, 16),  # args[0]: the flags
             _bpf(jset, 0, len(deny) + 2, _CLONE_THREAD), _bpf(ret, 0, 0, allow)]
    for i, nr in enumerate(deny):  # on a match jump to the EPERM return after the list
        prog.append(_bpf(jeq, len(deny) - i, 0, nr))
    prog += [_bpf(ret, 0, 0, allow), _bpf(ret, 0, 0, eperm)]
    return b"".join(prog)


def install_seccomp():
    """Load the filter into this process (after PR_SET_NO_NEW_PRIVS); raises OSError on failure."""
    program = seccomp_filter(platform.machine())
    if program is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")
    return True


# ----------------------------------------------------------------------------- the candidate
def _describe(exc):
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]


def _flush():
    """The program's printed output reaches its files before the runner may kill the process."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def candidate_main(program_path, to_runner, from_runner):
    """Execute the program, report its names, then answer calls until the runner hangs up."""
    try:
        install_seccomp()
    except OSError as exc:
        send(to_runner, {"fatal": f"sandbox: could not install the seccomp filter ({exc})"})
        return
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        with open(program_path, encoding="utf-8") as f:
            source = f.read()
        exec(compile(source, "program.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit included: leaving early is not a result
        _flush()
        send(to_runner, {"load_error": _describe(exc)})
        return
    _flush()
    functions, modules, values = [], {}, {}
    for name, value in list(namespace.items()):
        if name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            modules[name] = getattr(value, "__name__", "")
        elif callable(value):
            functions.append(name)
        else:
            try:
                values[name] = encode(value)
            except TypeError:
                pass
    send(to_runner, {"functions": functions, "modules": modules, "values": values})
    while True:
        try:
            request = receive(from_runner)
        except EOFError:
            return
        try:
            args = [decode(a) for a in request["args"]]
            kwargs = {k: decode(v) for k, v in request["kwargs"].items()}
            result = namespace[request["call"]](*args, **kwargs)
            reply = {"ok": encode(result)}
        except BaseException as exc:
            reply = {"raise": [type(exc).__name__, str(exc)[:2000]]}
        _flush()
        send(to_runner, reply)


# ----------------------------------------------------------------------------- the runner
def _builtin_exception(name, message):
    """The program's exception as the built-in exception of that name (tests may expect one),
    built by the runner from a name and a string; anything else becomes a ProgramError."""
    kind = getattr(builtins, name, None) if type(name) is str else None
    if isinstance(kind, type) and issubclass(kind, Exception) and kind.__module__ == "builtins":
        try:
            return kind(f"{message} (raised by the program)")
        except Exception:
            pass
    return ProgramError(f"{name}: {message}")


class Channel:
    def __init__(self, to_candidate, from_candidate):
        self.to_candidate, self.from_candidate = to_candidate, from_candidate

    def receive(self):
        try:
            message = receive(self.from_candidate)
        except EOFError:
            raise ProgramError("the program's process ended before it answered (it exited, crashed "
                               "or hit a limit)") from None
        if type(message) is not dict:
            raise ProgramError("malformed message from the program")
        return message

    def proxy(self, name):
        def call(*args, **kwargs):
            send(self.to_candidate, {"call": name, "args": [encode(a) for a in args],
                                     "kwargs": {str(k): encode(v) for k, v in kwargs.items()}})
            reply = self.receive()
            if "ok" in reply:
                return decode(reply["ok"])
            err = reply.get("raise")
            if type(err) is list and len(err) == 2 and all(type(e) is str for e in err):
                raise _builtin_exception(err[0], err[1])
            raise ProgramError(f"malformed reply from the program to a call of {name}")
        call.__name__ = call.__qualname__ = name
        return call


def test_namespace(report, channel):
    """The program's names as the tests see them: its functions as proxies, its plain values, its
    standard-library modules. A name of a built-in (`abs`, `len`, `sorted`) is never taken from the
    program: the tests mean the real one."""
    namespace = {"__name__": "__main__"}
    shadowing = set(dir(builtins))
    for name, module in dict(report.get("modules", {})).items():
        if type(module) is str and module.split(".")[0] in sys.stdlib_module_names and name not in shadowing:
            try:
                namespace[str(name)] = __import__(module, fromlist=["_"])
            except ImportError:
                pass
    for name, value in dict(report.get("values", {})).items():
        if name not in shadowing:
            namespace[str(name)] = decode(value)
    for name in list(report.get("functions", [])):
        if type(name) is str and name not in shadowing:
            namespace[name] = channel.proxy(name)
    return namespace


def runner_main():
    verdict_fd = int(sys.argv[1])
    limits = json.loads(sys.argv[2])
    for name, value in limits.items():  # inherited by the candidate
        res = getattr(resource, name)
        soft, hard = resource.getrlimit(res)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(res, (value, value))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/{mem,fd,environ}
    to_runner_r, to_runner_w = os.pipe()
    to_cand_r, to_cand_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            keep = {0, 1, 2, to_runner_w, to_cand_r}
            for fd in range(3, 1024):
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            candidate_main(sys.argv[3], to_runner_w, to_cand_r)
        finally:
            os._exit(0)
    os.close(to_runner_w)
    os.close(to_cand_r)
    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    nonce, tests = request["nonce"], request["tests"]
    status, error = "failed", ""
    channel = Channel(to_cand_w, to_runner_r)
    try:
        report = channel.receive()
        if "fatal" in report or "load_error" in report:
            raise ProgramError(str(report.get("fatal") or report.get("load_error")))
        namespace = test_namespace(report, channel)
        exec(compile(tests, "tests.py", "exec"), namespace)
        status = "passed"
    except BaseException as exc:  # the tests' assertion, the program's error, or its absence
        error = str(exc)[:2000] if isinstance(exc, ProgramError) else _describe(exc)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    message = json.dumps({"nonce": nonce, "status": status, "error": error}).encode()
    os.write(verdict_fd, message[:60000])
    os.close(verdict_fd)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    runner_main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: the verdict is out, nothing else is kept
