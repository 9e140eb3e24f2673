"""Where a batch's JSON Lines go, safely: checked before the first run, whole lines, resumable.

A batch sends one order per line to the CA; losing its output, or writing it over
its own input, costs the user those requests again (and, against production,
rate limit).  So, before any run starts:

- :func:`check_output` refuses an ``--output`` that is one of the batch's input
  files (the batch file, the account key, ...), also through a symlink or a hard
  link (same device and inode, or the same resolved path), that is a directory, or
  whose directory does not exist;
- :func:`check_stdout` refuses a stdout redirected into an input file
  (``batch names.txt >> names.txt``);
- :func:`read_output` reads what an existing output holds, for ``--resume``.

Then :class:`ReportWriter` writes each report as one ``write(2)`` of
``json + "\\n"``, followed by ``fsync`` on a regular file, so that a crash, a
``kill -9`` or a power cut leaves whole lines and at most one torn last line,
which :func:`read_output` recognises (it has no final newline) and the resumed
batch cuts off before it appends.  ``fsync`` cost, measured on this project's
2-core VM (ext4 on virtio): 0.20-0.25 ms a line alone; a 200-run batch against a
local Pebble at concurrency 10 took 8.18 s with it, 7.89 s without (medians of 3),
and a run against a real staging CA takes seconds.
"""

from __future__ import annotations

import collections
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmedryrun.errors import UsageError

__all__ = ["ReportWriter", "ResumeState", "check_output", "check_stdout", "identifier_key",
           "read_output"]

#: The verdicts a report line may carry (report.Verdict's values).
_VERDICTS = frozenset({"likely_success", "client_error", "staging_unstable"})


def identifier_key(identifiers: Any) -> frozenset[str]:
    """The key a resumed batch matches certificates by: the exact set of identifiers."""
    return frozenset(identifiers)


def _same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` are one file: same device and inode, or same resolved path.

    The inode comparison catches hard links and symlinks to an existing file; the
    resolved path catches a dangling symlink that writing would create.
    """
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        pass
    else:
        if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
            return True
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(output: str | os.PathLike[str],
                 inputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse an output file that cannot be written or would destroy an input.

    Writes nothing: the file is opened (created or truncated) only when the
    batch's first run is about to start.

    Args:
        output: The ``--output`` path.
        inputs: What the batch reads, by the words that name it in a message
            (``{"the batch file": path, "--account-key": path}``); None values are
            skipped.

    Raises:
        UsageError: the output is one of the inputs, a directory, or in a
            directory that does not exist (or is not a directory).
    """
    path = Path(output)
    for what, given in inputs.items():
        if given is not None and _same_file(output, given):
            raise UsageError(f"--output: {output} is the same file as {what} ({given});"
                             " writing the reports there would destroy it")
    if path.is_dir():
        raise UsageError(f"--output: {output} is a directory")
    parent = path.resolve().parent if path.is_symlink() else path.absolute().parent
    if not parent.exists():
        raise UsageError(f"--output: directory {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"--output: {parent} is not a directory")
    if path.exists() and not (path.is_file() or _is_char_device(path)):
        raise UsageError(f"--output: {output} is not a regular file")


def _is_char_device(path: Path) -> bool:
    """``/dev/null`` and friends are fine outputs."""
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False


def check_stdout(inputs: Mapping[str, str | os.PathLike[str] | None], fd: int = 1) -> None:
    """Refuse a stdout that is redirected into one of ``inputs`` (``>> names.txt``).

    Raises:
        UsageError: stdout is the same file as an input.
    """
    try:
        st = os.fstat(fd)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    for what, given in inputs.items():
        if given is None:
            continue
        try:
            other = os.stat(given)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino):
            raise UsageError(f"stdout is the same file as {what} ({given}); writing the"
                             " reports there would destroy it (use --output FILE)")


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What an existing batch output already holds (for ``--resume``).

    Attributes:
        path: The output file.
        reports: The report of every complete line, in file order, as JSON data.
        keep: Bytes of whole lines; a resumed batch cuts the file here before it
            appends.
        torn: Bytes after ``keep``: a last line without its newline, left by a crash
            in mid-write (dropped, and its certificate runs again).
    """

    path: str
    reports: tuple[Mapping[str, Any], ...]
    keep: int
    torn: int

    def done(self) -> collections.Counter[frozenset[str]]:
        """How many reports the file holds for each identifier set (a multiset)."""
        return collections.Counter(identifier_key(r["identifiers"]) for r in self.reports)


def _is_report(data: Any) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("identifiers"), list)
            and bool(data["identifiers"])
            and all(isinstance(i, str) for i in data["identifiers"])
            and data.get("verdict") in _VERDICTS)


def read_output(path: str | os.PathLike[str]) -> ResumeState:
    """Read an existing batch output for ``--resume`` (a missing file holds nothing).

    Every complete line (ending in a newline) must be a report; the last line may
    lack its newline (a crash mid-write), and is then dropped whatever it holds.
    Reads only; the file is cut and appended to when the batch starts.

    Raises:
        UsageError: the file cannot be read, or a complete line is not a report
            (then this is not a batch output, and appending to it would be wrong).
    """
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ResumeState(name, (), 0, 0)
    except OSError as exc:
        raise UsageError(f"--resume: cannot read {name}: {exc.strerror}") from exc
    keep = data.rfind(b"\n") + 1
    reports = []
    for number, raw in enumerate(data[:keep].splitlines(), start=1):
        try:
            report = json.loads(raw)
        except ValueError:
            report = None
        if not _is_report(report):
            raise UsageError(f"--resume: {name}:{number} is not a report line (is this the"
                             " output of an earlier batch?)")
        reports.append(report)
    return ResumeState(name, tuple(reports), keep, len(data) - keep)


class ReportWriter:
    """Writes report lines whole: one ``write(2)`` of ``json + "\\n"`` each, then ``fsync``.

    One ``write`` of a whole line means a crash (or a Ctrl-C, which the batch
    handles between lines) leaves only whole lines, bar at most one torn last line
    (a crash inside the system call); ``fsync`` on a regular file makes each line
    survive a power cut too.  Pipes and terminals are written the same way, without
    ``fsync``.

    Use :meth:`open` for a file, :meth:`stdout` for standard output.
    """

    def __init__(self, fd: int, name: str, *, owned: bool) -> None:
        self.fd = fd
        self.name = name
        self._owned = owned
        self._sync = stat.S_ISREG(os.fstat(fd).st_mode)
        #: Lines written so far.
        self.lines = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str], resume: ResumeState | None = None
             ) -> ReportWriter:
        """Open ``path`` for a batch: truncated, or (resuming) cut after ``resume.keep``.

        Raises:
            UsageError: it cannot be opened (nothing has been sent yet).
        """
        name = os.fspath(path)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags | (0 if resume else os.O_TRUNC), 0o644)
        except OSError as exc:
            raise UsageError(f"--output: cannot open {name}: {exc.strerror}") from exc
        try:
            if resume is not None and stat.S_ISREG(os.fstat(fd).st_mode):
                # The torn last line, if any, goes; whole lines stay (the file may have
                # grown since it was read only if someone else writes it: then keep all).
                if os.fstat(fd).st_size == resume.keep + resume.torn and resume.torn:
                    os.ftruncate(fd, resume.keep)
                os.lseek(fd, 0, os.SEEK_END)
            return cls(fd, name, owned=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def stdout(cls) -> ReportWriter:
        """Write to file descriptor 1 (whatever Python buffered there is flushed first)."""
        import sys

        sys.stdout.flush()
        return cls(1, "stdout", owned=False)

    def write(self, line: str) -> None:
        """Append ``line`` (one JSON document, no newline in it) and its newline."""
        data = (line + "\n").encode("utf-8")
        view = memoryview(data)
        while view:  # a regular file takes it in one call; a pipe may take less
            view = view[os.write(self.fd, view):]
        if self._sync:
            os.fsync(self.fd)
        self.lines += 1

    def close(self) -> None:
        """Close the file (standard output stays open)."""
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
