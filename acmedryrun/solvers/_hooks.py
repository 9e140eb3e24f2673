"""Running certbot-style hook commands: one shell command line per challenge.

The hook runner shared by the hook solvers (``DNS01Hook``, ``HTTP01Hook``):
checking that a hook's program (and a script's ``#!`` interpreter) exists
before any request, running it through ``/bin/sh -c`` in its own process group
with a time limit, quoting the tail of what it printed when it fails, and
:class:`ManualHooks`, certbot's manual-hook environment per challenge type.
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
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from acmedryrun.errors import UsageError
from acmedryrun.report import SolverErrorKind
from acmedryrun.solvers._base import Challenge, SolverFailure

DEFAULT_HOOK_TIMEOUT = 120.0

#: How much of a failed hook's stderr a problem quotes.
STDERR_TAIL_LINES = 5
STDERR_TAIL_CHARS = 500
#: CERTBOT_AUTH_OUTPUT is passed in the environment, whose strings the kernel caps
#: (MAX_ARG_STRLEN, 128 KiB on Linux); keep well below it.
AUTH_OUTPUT_MAX_CHARS = 64 * 1024
#: After SIGTERM, how long a timed-out hook's process group gets before SIGKILL.
KILL_GRACE_SECONDS = 0.5
#: How often a running hook is checked for its end, its time limit and a cancel.
_WAIT_SLICE = 0.02

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
    shell built-ins (``true``, ``exit``, ``cd`` ...) pass.  A script's ``#!``
    interpreter is checked too (certbot does not: its hook then fails only after
    the order was created).

    Raises:
        UsageError: unparseable, empty, not found on PATH, not executable, or a
            script whose ``#!`` interpreter is missing.
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
    else:
        found = shutil.which(program)
        if found is None:
            raise UsageError(
                f"{option}: '{program}' is not an executable found on PATH"
                f" ({os.environ.get('PATH', '')})")
        path = found
    _check_interpreter(path, program, option)


def _check_interpreter(path: str, program: str, option: str) -> None:
    """A script's ``#!`` interpreter must exist too, or the hook fails only mid-run.

    The kernel reads at most the first 256 bytes for the ``#!`` line (Linux
    ``BINPRM_BUF_SIZE``).  ``#!/usr/bin/env [-S] NAME`` is followed to NAME on PATH.
    A file that cannot be read here (no read permission) is left to the kernel.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return
    if not head.startswith(b"#!"):
        return
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        raise UsageError(f"{option}: '{program}' has an empty '#!' line")
    interpreter = words[0]
    line = "#!" + " ".join(words)
    if not os.path.isfile(interpreter) or not os.access(interpreter, os.X_OK):
        raise UsageError(
            f"{option}: '{program}' starts with '{line}', but {interpreter} is not an"
            " executable file on this machine")
    if os.path.basename(interpreter) == "env":
        args = [w for w in words[1:] if not w.startswith("-") and not _ASSIGNMENT.match(w)]
        if args and shutil.which(args[0]) is None:
            raise UsageError(
                f"{option}: '{program}' starts with '{line}', but '{args[0]}' is not an"
                f" executable found on PATH ({os.environ.get('PATH', '')})")


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


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _kill_group(proc: subprocess.Popen[bytes], grace: float = KILL_GRACE_SECONDS) -> None:
    """SIGTERM the hook's process group, SIGKILL what is left ``grace`` seconds later.

    A ``grace`` of 0 is SIGKILL at once (a cancel: nothing may linger).
    """
    if grace > 0:
        _signal_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # The shell may be gone while its children linger in the group: kill them all.
    _signal_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def run_hook(command: str, env: Mapping[str, str], timeout: float, *,
             cancel: threading.Event | None = None,
             kill_grace: float = KILL_GRACE_SECONDS) -> HookResult:
    """Run ``command`` through ``/bin/sh -c`` like certbot's hooks, bounded in time.

    The hook runs in its own session (process group).  After ``timeout`` seconds
    the whole group gets SIGTERM and, ``kill_grace`` seconds later, SIGKILL, so a
    hung ``nsupdate`` or ``sleep`` child goes too and the hook never outlives
    ``timeout + kill_grace``.  Setting ``cancel`` (Ctrl-C, ``cancel=``) kills the group
    at once.  Output goes to temporary files rather than pipes, so a daemon the hook
    leaves running cannot block the wait.  Stdin is ``/dev/null``: hooks run
    unattended.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env=dict(env), start_new_session=True, close_fds=True,
        )
        timed_out = False
        end = time.monotonic() + max(0.0, timeout)
        try:
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    _kill_group(proc, grace=0.0)
                    break
                left = end - time.monotonic()
                if left <= 0:
                    timed_out = True
                    _kill_group(proc, grace=kill_grace)
                    break
                try:
                    proc.wait(timeout=min(_WAIT_SLICE, left))
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt): leave nothing behind
                _kill_group(proc, grace=0.0)
        return HookResult(
            returncode=proc.returncode if proc.returncode is not None else -signal.SIGKILL,
            stdout=_read_back(out, AUTH_OUTPUT_MAX_CHARS),
            stderr=_read_back(err, 16 * 1024),
            timed_out=timed_out,
        )


def output_tail(text: str) -> str:
    """The last few non-blank lines of a hook's stderr or stdout, for a problem's detail."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    tail = "\n".join(lines[-STDERR_TAIL_LINES:])
    if len(tail) > STDERR_TAIL_CHARS:
        tail = "..." + tail[-STDERR_TAIL_CHARS:]
    return tail


#: The former name of :func:`output_tail`.
stderr_tail = output_tail


def failure_detail(head: str, result: HookResult) -> str:
    """``head`` plus the tails of what the hook printed: stderr after ``: ``, then stdout.

    Both streams matter: many hooks report on stdout only, and a hook that timed
    out has usually printed why (``Still waiting for ...``) before it was killed.
    """
    err, out = output_tail(result.stderr), output_tail(result.stdout)
    return head + (f": {err}" if err else "") + (f"; stdout: {out}" if out else "")


def _exit_text(result: HookResult) -> str:
    if result.returncode < 0:
        try:
            return f"was killed by {signal.Signals(-result.returncode).name}"
        except ValueError:
            return f"was killed by signal {-result.returncode}"
    return f"exited {result.returncode}"


class ManualHooks:
    """certbot's ``--manual-auth-hook`` / ``--manual-cleanup-hook`` contract, for one run.

    The environment is exactly what certbot 5's manual plugin sets
    (``certbot/_internal/plugins/manual.py``, ``_perform_achall_with_script`` and
    ``cleanup``), on top of the parent environment without any inherited
    ``CERTBOT_*`` variable:

    - ``CERTBOT_DOMAIN`` / ``CERTBOT_IDENTIFIER``: the name or IP address
      validated (a wildcard's base name, without ``*.``);
    - ``CERTBOT_VALIDATION``: the key authorization (http-01) or the TXT value
      (dns-01);
    - ``CERTBOT_TOKEN``: the challenge token, **for http-01 only** (certbot pops
      it from the environment for every other challenge type);
    - ``CERTBOT_REMAINING_CHALLENGES``: how many challenges come after this one;
    - ``CERTBOT_ALL_DOMAINS`` / ``CERTBOT_ALL_IDENTIFIERS``: every challenged
      identifier of the run, comma-separated, in challenge order;
    - cleanup only: ``CERTBOT_AUTH_OUTPUT``, the auth hook's stdout, stripped.

    Unlike certbot, a hook that exits non-zero fails the challenge at once
    (certbot only logs it and lets the CA fail the validation), a hook has a
    time limit, and both hooks' programs and ``#!`` interpreters are checked
    before any request.

    Args:
        auth_hook: The command that puts the challenge response in place.
        cleanup_hook: The command that removes it again; optional.
        timeout: Seconds each hook may run before its process group is killed.
        auth_option: The option name ``auth_hook`` came from, for messages.
        cleanup_option: Likewise for ``cleanup_hook``.

    Raises:
        UsageError: a hook's program or interpreter is missing, or a bad timeout.
    """

    def __init__(self, auth_hook: str, cleanup_hook: str | None, *, timeout: float,
                 auth_option: str, cleanup_option: str) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not timeout > 0:
            raise UsageError(f"hook timeout: {timeout!r} is not a positive number")
        self.auth_hook = auth_hook
        self.cleanup_hook = cleanup_hook or None
        self.timeout = float(timeout)
        self.auth_option = auth_option
        self.cleanup_option = cleanup_option
        self._auth_output: dict[str, str] = {}
        self.check()

    def check(self) -> None:
        """Check both hooks' programs (and interpreters) now; the files may have changed.

        Raises:
            UsageError: a program or interpreter is missing or not executable.
        """
        check_hook_command(self.auth_hook, self.auth_option)
        if self.cleanup_hook is not None:
            check_hook_command(self.cleanup_hook, self.cleanup_option)

    def describe(self) -> str:
        """The auth hook, with secrets in ``NAME=value`` words hidden."""
        return redact_command(self.auth_hook)

    def reset(self) -> None:
        """Forget the auth hooks' outputs (end of a run)."""
        self._auth_output.clear()

    @staticmethod
    def environment(challenge: Challenge, challenges: Sequence[Challenge]) -> dict[str, str]:
        """The hook environment for ``challenge``, one of the run's ``challenges``."""
        order = list(challenges) if challenge in challenges else [challenge]
        identifiers = ",".join(ch.identifier for ch in order)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTBOT_")}
        env.update({
            "CERTBOT_DOMAIN": challenge.identifier,
            "CERTBOT_IDENTIFIER": challenge.identifier,
            "CERTBOT_VALIDATION": challenge.validation,
            "CERTBOT_ALL_DOMAINS": identifiers,
            "CERTBOT_ALL_IDENTIFIERS": identifiers,
            "CERTBOT_REMAINING_CHALLENGES": str(len(order) - order.index(challenge) - 1),
        })
        if challenge.type == "http-01":
            env["CERTBOT_TOKEN"] = challenge.token
        return env

    def auth(self, challenge: Challenge, challenges: Sequence[Challenge]) -> None:
        """Run the auth hook for ``challenge``; keep its stdout for the cleanup hook.

        Raises:
            SolverFailure: it could not start, exited non-zero, or timed out.
        """
        self._auth_output[challenge.url] = ""
        result = self._run("auth", self.auth_hook, self.environment(challenge, challenges),
                           challenge)
        self._auth_output[challenge.url] = result.stdout.strip().replace("\0", "")

    def cleanup(self, challenge: Challenge, challenges: Sequence[Challenge]) -> None:
        """Run the cleanup hook (if any) for a challenge whose auth hook ran.

        Raises:
            SolverFailure: it could not start, exited non-zero, or timed out.
        """
        output = self._auth_output.pop(challenge.url, "")
        if self.cleanup_hook is None:
            return
        env = self.environment(challenge, challenges)
        env["CERTBOT_AUTH_OUTPUT"] = output
        self._run("cleanup", self.cleanup_hook, env, challenge)

    def _run(self, which: str, command: str, env: Mapping[str, str],
             challenge: Challenge) -> HookResult:
        shown = redact_command(command)
        # Never past the challenge's deadline (for a cleanup: the run's one cleanup
        # budget), the SIGTERM grace included; a cancel kills the hook at once.
        left = challenge.time_left()
        limit = self.timeout if left is None else min(self.timeout, left)
        grace = min(KILL_GRACE_SECONDS, limit / 2)
        if limit <= 2 * _WAIT_SLICE:
            raise SolverFailure(SolverErrorKind.HOOK_TIMEOUT,
                                f"{which} hook '{shown}' not run: no time was left for it")
        deadline = challenge.deadline
        cancel = deadline.cancel_event if deadline is not None else None
        try:
            result = run_hook(command, env, limit - grace, cancel=cancel, kill_grace=grace)
        except OSError as exc:  # /bin/sh missing, fork failed, no temp dir
            raise SolverFailure(SolverErrorKind.HOOK_FAILED,
                                f"{which} hook '{shown}' could not be started: {exc}") from exc
        if result.timed_out:
            raise SolverFailure(SolverErrorKind.HOOK_TIMEOUT, failure_detail(
                f"{which} hook '{shown}' did not finish within {limit:.3g} s;"
                " its process group was killed", result))
        if cancel is not None and cancel.is_set():
            raise SolverFailure(SolverErrorKind.HOOK_FAILED,
                                f"{which} hook '{shown}' was killed: the run was cancelled")
        if result.returncode != 0:
            raise SolverFailure(SolverErrorKind.HOOK_FAILED, failure_detail(
                f"{which} hook '{shown}' {_exit_text(result)}", result))
        return result
