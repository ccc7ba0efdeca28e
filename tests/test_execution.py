"""The sandboxed executor: bad programs fail cleanly and never hang or reach outside."""

from __future__ import annotations

import os
import time

import pytest

from nexus.execution import run_program

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
    assert not bomb.passed and "os.fork is not allowed" in bomb.error
    shell = run_program("import subprocess\nsubprocess.run(['echo', 'hi'])\n", TESTS)
    assert not shell.passed and "not allowed" in shell.error
    system = run_program("import os\nos.system('echo hi')\n", TESTS)
    assert not system.passed and "os.system is not allowed" in system.error


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
    assert not read.passed and "outside the sandbox" in read.error
    write = run_program(GOOD + f"open({str(target)!r}, 'w').write('x')\n", TESTS)
    assert not write.passed and "outside the sandbox" in write.error and not target.exists()
    remove = run_program(GOOD + f"import os\nos.remove({str(secret)!r})\n", TESTS)
    assert not remove.passed and secret.exists()
    inside = run_program(GOOD + "open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n", TESTS)
    assert inside.passed  # its own temp dir is fine


def test_network_and_memory_hogs_fail():
    net = run_program(GOOD + "import socket\nsocket.create_connection(('127.0.0.1', 9))\n", TESTS)
    assert not net.passed and "not allowed" in net.error
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
