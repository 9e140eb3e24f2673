"""Running certbot-style hook commands: one shell command line per challenge.

The hook runner shared by the hook solvers (``DNS01Hook``, ``HTTP01Hook``):
checking that a hook's program exists before any request, running it through
``/bin/sh -c`` in its own process group with a time limit, and quoting what it
printed when it fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from acmedryrun.errors import UsageError

DEFAULT_HOOK_TIMEOUT = 120.0
#: Seconds a cleanup hook may still run after the run's deadline has passed.
CLEANUP_GRACE = 5.0

#: How much of a failed hook's stderr a problem quotes.
STDERR_TAIL_LINES = 5
STDERR_TAIL_CHARS = 500
#: CERTBOT_AUTH_OUTPUT is passed in the environment, whose strings the kernel caps
#: (MAX_ARG_STRLEN, 128 KiB on Linux); keep well below it.
AUTH_OUTPUT_MAX_CHARS = 64 * 1024
#: After SIGTERM, how long a timed-out hook's process group gets before SIGKILL.
KILL_GRACE_SECONDS = 2.0

#: Shell built-ins that are valid hook programs although no file on PATH backs them.
_SHELL_BUILTINS = frozenset({
    ":", ".", "alias", "bg", "break", "cd", "command", "continue", "eval", "exec", "exit",
    "export", "false", "fg", "getopts", "hash", "jobs", "kill", "printf", "pwd", "read",
    "readonly", "return", "set", "shift", "test", "times", "trap", "true", "type",
    "ulimit", "umask", "unalias", "unset", "wait", "echo", "[",
})
#: A shell variable assignment word (``NAME=value``) before the program name.
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True, slots=True)
class HookResult:
    """How a hook command ended.

    Attributes:
        returncode: The exit status; negative: killed by that signal.
        stdout: Its standard output (decoded, bounded).
        stderr: Its standard error (decoded, bounded).
        timed_out: True when it ran past the timeout and its process group was killed.
    """

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def check_hook_command(command: str, option: str) -> None:
    """Check that ``command``'s program exists and is executable, as certbot does.

    The program is the first shell word after any ``NAME=value`` assignments;
    shell built-ins (``true``, ``exit``, ``cd`` ...) pass.

    Raises:
        UsageError: unparseable, empty, not found on PATH, or not executable.
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{option}: cannot parse {command!r} as a shell command: {exc}") \
            from exc
    while words and _ASSIGNMENT.match(words[0]):
        words.pop(0)
    if not words:
        raise UsageError(f"{option}: no command given")
    program = words[0]
    if program in _SHELL_BUILTINS:
        return
    if "/" in program:
        path = os.path.expanduser(program)
        if not os.path.exists(path):
            raise UsageError(f"{option}: '{program}' is not an executable: no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise UsageError(
                f"{option}: '{program}' is not an executable: it exists but cannot be run"
                " (chmod +x?)")
        return
    if shutil.which(program) is None:
        raise UsageError(
            f"{option}: '{program}' is not an executable found on PATH"
            f" ({os.environ.get('PATH', '')})")


def redact_command(command: str) -> str:
    """``command`` for messages, with the values of ``NAME=value`` words hidden.

    A hook line such as ``API_TOKEN=s3cr3t /usr/local/bin/dns-hook`` must not
    put the token into reports and logs.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if not any(_ASSIGNMENT.match(w) for w in words):
        return command
    return " ".join(
        w.split("=", 1)[0] + "=***" if _ASSIGNMENT.match(w) else shlex.quote(w) for w in words
    )


def _read_back(handle: IO[bytes], limit: int) -> str:
    """The last ``limit`` bytes written to ``handle``, decoded."""
    handle.flush()
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - limit))
    return handle.read().decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the hook's process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The shell is gone; its children may linger in the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


def run_hook(command: str, env: Mapping[str, str], timeout: float) -> HookResult:
    """Run ``command`` through ``/bin/sh -c`` like certbot's hooks, bounded by ``timeout``.

    The hook runs in its own session (process group); on timeout the whole
    group is killed, so a hung ``nsupdate`` or ``sleep`` child goes too.
    Output goes to temporary files rather than pipes, so a daemon the hook
    leaves running cannot block the wait.  Stdin is ``/dev/null``: hooks run
    unattended.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env=dict(env), start_new_session=True, close_fds=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave nothing behind
                _kill_group(proc)
        return HookResult(
            returncode=proc.returncode if proc.returncode is not None else -signal.SIGKILL,
            stdout=_read_back(out, AUTH_OUTPUT_MAX_CHARS),
            stderr=_read_back(err, 16 * 1024),
            timed_out=timed_out,
        )


def stderr_tail(text: str) -> str:
    """The last few lines of a hook's stderr, for a problem's detail."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-STDERR_TAIL_LINES:])
    if len(tail) > STDERR_TAIL_CHARS:
        tail = "..." + tail[-STDERR_TAIL_CHARS:]
    return tail


def _exit_text(result: HookResult) -> str:
    if result.returncode < 0:
        try:
            return f"was killed by {signal.Signals(-result.returncode).name}"
        except ValueError:
            return f"was killed by signal {-result.returncode}"
    return f"exited {result.returncode}"
