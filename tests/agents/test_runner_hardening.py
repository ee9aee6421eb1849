"""The runner's hardening on this machine: a non-dumpable process's environment is closed to a
child of the same uid, which is what the agent is to the runner.

The processes run as the agent's uid 10001 with no capability: root (the test's own user
here) holds CAP_SYS_PTRACE and reads every /proc/<pid>/environ, which would prove nothing.
tests/images/test_images.py proves the same with the real runner inside the built image, as
PID 1 of its own PID namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agents.runner_harness import make_job, run_runner, runner_env

ROOT = Path(__file__).resolve().parents[2]
AGENT_UID = 10001
MARKER = "outpost-hardening-marker-5d1e"
# The agent's side: reads its parent's environ (or the pid it is given), says what it found.
READER = f"""
import os, sys
pid = sys.argv[1] if len(sys.argv) > 1 else os.getppid()
try:
    data = open(f"/proc/{{pid}}/environ", "rb").read()
except PermissionError:
    print("refused")
else:
    print("read", "{MARKER}" in data.decode(errors="replace"))
"""
# The runner's side: hardens itself (or not), then runs the reader as its child.
PARENT = f"""
import subprocess, sys
if sys.argv[1] == "harden":
    from agents.runner.hardening import harden
    harden()
reader = subprocess.run([sys.executable, "-c", {READER!r}], capture_output=True, text=True)
print(reader.stdout.strip(), reader.returncode)
"""


def python_for_agent_uid() -> str:
    """An interpreter uid 10001 may execute (the virtual environment's may live under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        real = os.path.realpath(candidate)
        if Path(real).is_file() and all(os.stat(parent).st_mode & 0o001 for parent in Path(real).parents):
            return real
    pytest.fail("no python3 that uid 10001 can execute (looked at the venv's, /usr/bin, /usr/local/bin)")


def as_agent_uid(*command: str) -> list[str]:
    """The command as uid 10001 without capabilities; as is when the tests already run
    unprivileged (then the test's own uid plays the agent's)."""
    if os.geteuid() != 0:
        return list(command)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the probe as uid 10001"
    return [
        setpriv,
        f"--reuid={AGENT_UID}",
        f"--regid={AGENT_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        *command,
    ]


def run_parent(mode: str) -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "MARKER_VARIABLE": MARKER}
    done = subprocess.run(
        as_agent_uid(python_for_agent_uid(), "-c", PARENT, mode),
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_same_uid_child_reads_a_dumpable_parents_environment() -> None:
    """The control: without the hardening the child reads everything, the marker included
    (this is what ECS's init process kept readable as PID 1)."""
    assert run_parent("plain") == ["read", "True", "0"]


def test_a_same_uid_child_cannot_read_a_hardened_parents_environment() -> None:
    assert run_parent("harden") == ["refused", "0"]


def test_the_runner_entry_point_hardens_before_anything_else() -> None:
    """`python -m agents.runner` hardens before reading a setting: a runner with no settings
    at all (exit 2, usage) is already non-dumpable by then."""
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['agents.runner']\n"
        "try:\n"
        "    runpy.run_module('agents.runner', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "import ctypes\n"
        "print(code, ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "0"]  # EXIT_USAGE, and PR_GET_DUMPABLE answers 0


def test_the_runner_reaps_orphans_that_left_the_agents_process_group(plane, workspace, tmp_path) -> None:
    """The runner is PID 1 of the agent task and a child subreaper, so a process the agent
    detaches (new session, parent gone) becomes the runner's child; when it exits the runner
    reaps it while the agent still runs, and the agent's own exit status still arrives."""
    pid_file = tmp_path / "daemon.pid"
    # The detached process writes its pid and exits after 0.3 s; the agent waits up to 10 s for
    # it to be gone (reaped), then says what is left of it: "Z" when nobody reaped it.
    plane.job = make_job(
        f"sh -c 'setsid sh -c \"echo \\$\\$ > {pid_file}.new && mv {pid_file}.new {pid_file}; sleep 0.3\" & exit 0'; "
        f"while [ ! -s {pid_file} ]; do sleep 0.05; done; "
        f"for i in $(seq 100); do [ -e /proc/$(cat {pid_file}) ] || break; sleep 0.1; done; "
        f"echo daemon-state=$(cut -d' ' -f3 /proc/$(cat {pid_file})/stat 2>/dev/null || echo gone); "
        "exit 7"
    )

    done = run_runner(runner_env(plane, workspace))

    assert done.returncode == 0, done.stderr
    assert (plane.result["outcome"], plane.result["exit_code"]) == ("FAILED", 7)
    transcript = plane.uploads["transcript.txt"].decode()
    assert "daemon-state=gone" in transcript, transcript  # "Z" is a zombie nobody reaped


def test_a_local_repository_of_another_user_is_cloned_and_nothing_else_is_trusted(tmp_path: Path) -> None:
    """In an image the runner is uid 10001 and a local repository (--allow-local-repos) the
    host user's: git's ownership check would refuse it. The runner names that one repository
    safe for its clone, and only for the clone: the checkout's config lists nothing."""
    import threading
    import time

    from agents.runner.redact import Redactor
    from agents.runner.workspace import Git

    if os.geteuid() != 0:
        pytest.fail("this test changes a repository's owner: it needs root (as CI runs)")
    source = tmp_path / "their repo"
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "--quiet", "-b", "main", str(source)], check=True)
    (source / "a.txt").write_text("a\n")
    subprocess.run([*git, "-C", str(source), "add", "a.txt"], check=True)
    subprocess.run([*git, "-C", str(source), "commit", "--quiet", "-m", "a"], check=True)
    for path in [source, *source.rglob("*")]:
        os.lchown(path, 4321, 4321)
    plain = subprocess.run(
        ["git", "clone", "--quiet", source.as_uri(), str(tmp_path / "plain")], capture_output=True, text=True
    )
    assert "dubious ownership" in plain.stderr  # what the runner meets without the exception

    checkout = tmp_path / "workspace" / "repo"
    checkout.parent.mkdir()
    runner_git = Git(
        checkout,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        deadline=time.monotonic() + 60,
        stop=threading.Event(),
        redact=Redactor([]),
    )
    base = runner_git.clone(source.as_uri(), None)
    assert (checkout / "a.txt").read_text() == "a\n" and len(base) == 40
    global_config = subprocess.run(
        ["git", "config", "--global", "--get-all", "safe.directory"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert global_config.stdout == ""
