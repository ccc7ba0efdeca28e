"""The sandboxed executor: bad programs fail cleanly and never hang or reach outside.
(`test_sandbox_redteam.py` holds the attacks; this file the ordinary behaviour.)"""

from __future__ import annotations

import time

import pytest

from nexus import execution
from nexus.execution import SandboxUnavailable, run_program

GOOD = "def add(a, b):\n    return a + b\n"
TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def test_a_correct_program_passes_and_a_wrong_one_fails_with_the_error():
    assert run_program(GOOD, TESTS).passed
    bad = run_program("def add(a, b):\n    return a - b\n", TESTS)
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.error


def test_infinite_loop_is_killed_at_the_time_limit():
    start = time.perf_counter()
    result = run_program("while True:\n    pass\n", TESTS, timeout=1.0)
    assert result.status == "timeout" and time.perf_counter() - start < 10


def test_syntax_error_and_sys_exit_do_not_pass():
    syntax = run_program("def add(a, b) return a\n", TESTS)
    assert syntax.status == "failed" and "SyntaxError" in syntax.error
    for early_exit in ("import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n"):
        result = run_program(GOOD + early_exit, TESTS)
        assert not result.passed, early_exit  # exiting before the tests is not a pass


def test_fork_bomb_and_subprocesses_are_refused():
    bomb = run_program("import os\nwhile True:\n    os.fork()\n", TESTS, timeout=3.0)
    assert not bomb.passed and "Operation not permitted" in bomb.error
    shell = run_program("import subprocess\nsubprocess.run(['echo', 'hi'])\n", TESTS)
    assert not shell.passed and "Operation not permitted" in shell.error
    system = run_program(GOOD + "import os\nassert os.system('echo hi') == 0\n", TESTS)
    assert not system.passed


def test_output_flood_is_cut_and_reported():
    flood = run_program(GOOD + "while True:\n    print('x' * 10_000)\n", TESTS, max_output=1000, timeout=5)
    assert not flood.passed and len(flood.stdout) < 1100  # the file-size limit stops it; we keep 1000 bytes
    chatty = run_program(GOOD + "print('y' * 5000)\n", TESTS, max_output=1000)
    assert chatty.passed and chatty.stdout.endswith("[... output cut at 1000 bytes]") and len(chatty.stdout) < 1100


def test_files_outside_the_sandbox_cannot_be_read_or_written(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    target = tmp_path / "written.txt"
    read = run_program(GOOD + f"open({str(secret)!r}).read()\n", TESTS)
    assert not read.passed and "No such file or directory" in read.error  # not even visible
    write = run_program(GOOD + f"open({str(target)!r}, 'w').write('x')\n", TESTS)
    assert not write.passed and not target.exists()
    remove = run_program(GOOD + f"import os\nos.remove({str(secret)!r})\n", TESTS)
    assert not remove.passed and secret.exists()
    inside = run_program(GOOD + "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n", TESTS)
    assert inside.passed  # its own temp dir is fine


def test_network_and_memory_hogs_fail():
    net = run_program(GOOD + "import socket\nsocket.create_connection(('127.0.0.1', 9))\n", TESTS)
    assert not net.passed and "Operation not permitted" in net.error
    hog = run_program(GOOD + "x = bytearray(4 * 1024 ** 3)\n", TESTS, memory_mb=512)
    assert not hog.passed and "MemoryError" in hog.error


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
    from nexus.data.humaneval import execute, load_problems, split_problems, truncate_completion

    problems = load_problems()
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    for problem in problems[:8]:
        assert execute(problem, problem.canonical_solution).passed, problem.task_id
        assert not execute(problem, "    return None\n").passed, problem.task_id
    train, held = split_problems(problems, 0.5, seed=0)
    assert len(train) == 82 and not {p.task_id for p in train} & {p.task_id for p in held}
    assert truncate_completion("    return 1\n\ndef other():\n    pass") == "    return 1\n"


def test_program_output_and_its_exceptions_reach_the_result():
    printed = run_program(GOOD + "print('loaded')\n", "print(add(1, 2))\nassert add(1, 2) == 3\n")
    assert printed.passed and printed.stdout.splitlines() == ["loaded", "3"]
    raising = run_program("def add(a, b):\n    raise ValueError('no adding today')\n", TESTS)
    assert not raising.passed and "ValueError: no adding today" in raising.error
    expected = run_program("def add(a, b):\n    raise KeyError(a)\n",
                           "try:\n    add(1, 2)\n    raise SystemExit(1)\nexcept KeyError:\n    pass\n")
    assert expected.passed  # tests may expect a built-in exception from the program


def test_plain_data_crosses_intact_and_objects_do_not():
    program = "def echo(x):\n    return x\ndef obj():\n    return object()\nCONSTANT = {'k': (1, 2.5)}\n"
    tests = ("for v in [None, True, 3, 2**100, -1.5, float('inf'), 1+2j, 'é', b'\\x00', [1, [2]], (1,), {1: 'a'},"
             " {1, 2}, frozenset({3})]:\n    r = echo(v)\n    assert r == v and type(r) is type(v), (v, r)\n"
             "assert CONSTANT == {'k': (1, 2.5)}\n")
    assert run_program(program, tests).passed
    refused = run_program(program, "obj()\n")
    assert not refused.passed and "is not plain data" in refused.error


def test_without_an_os_sandbox_it_refuses_unless_allowed(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    execution.sandbox_available.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap.*allow_unsandboxed=True"):
            run_program(GOOD, TESTS)
        with pytest.warns(RuntimeWarning, match="WITHOUT an OS sandbox"):
            result = run_program(GOOD, TESTS, allow_unsandboxed=True)
        assert result.passed and not result.sandboxed
        with pytest.warns(RuntimeWarning):  # the verdict still comes from the runner
            hacked = run_program("class T:\n    def __eq__(s, o): return True\ndef add(a, b):\n    return T()\n",
                                 TESTS, allow_unsandboxed=True)
        assert not hacked.passed
    finally:
        monkeypatch.undo()
        execution.sandbox_available.cache_clear()
