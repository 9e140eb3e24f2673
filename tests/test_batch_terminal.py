"""Batch (and check) for people (issue 14): what a terminal shows, through a real pseudo-terminal.

The CLI runs as a subprocess whose stderr (and, in some tests, stdout) is the slave
side of a ``pty.openpty()`` of a set size; what it wrote is read from the master
side and replayed on a tiny screen model (carriage return, erase-line, SGR colours
ignored) to get the lines a person would see.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from acmedryrun.testing import LocalPebble

_batches = itertools.count(1)
_CSI = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])")


@dataclass
class Terminal:
    """What a run left: its exit code, the raw bytes per stream, the stdout pipe if any."""

    returncode: int
    raw_err: str
    raw_out: str
    piped_out: str

    @property
    def screen(self) -> list[str]:
        return screen_lines(self.raw_err)


def screen_lines(raw: str) -> list[str]:
    """The lines ``raw`` leaves on a terminal (no auto-wrap: a too-long line stays long)."""
    lines: list[str] = []
    for physical in raw.split("\n"):
        buf: list[str] = []
        col = 0
        i = 0
        while i < len(physical):
            ch = physical[i]
            m = _CSI.match(physical, i)
            if m:
                if m.group(2) == "K":
                    del buf[col:]
                i = m.end()
                continue
            if ch == "\r":
                col = 0
            else:
                if col < len(buf):
                    buf[col] = ch
                else:
                    buf.append(ch)
                col += 1
            i += 1
        lines.append("".join(buf))
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _set_size(fd: int, columns: int, rows: int = 24) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def _drain(fd: int, sink: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every slave side is closed
            return
        if not chunk:
            return
        sink.append(chunk)


def on_terminal(argv: Sequence[str], *, columns: int = 80, stdout_tty: bool = True,
                timeout: float = 180) -> Terminal:
    """Run the CLI with stderr (and stdout, if ``stdout_tty``) on pseudo-terminals."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    err_master, err_slave = pty.openpty()
    _set_size(err_slave, columns)
    out_master = out_slave = None
    if stdout_tty:
        out_master, out_slave = pty.openpty()
        _set_size(out_slave, columns)
    proc = subprocess.Popen(
        [sys.executable, "-m", "acmedryrun", *argv], stdin=subprocess.DEVNULL,
        stdout=out_slave if stdout_tty else subprocess.PIPE, stderr=err_slave, env=env)
    os.close(err_slave)
    if out_slave is not None:
        os.close(out_slave)
    err: list[bytes] = []
    out: list[bytes] = []
    readers = [threading.Thread(target=_drain, args=(err_master, err))]
    if out_master is not None:
        readers.append(threading.Thread(target=_drain, args=(out_master, out)))
    for r in readers:
        r.start()
    piped = proc.stdout.read().decode() if proc.stdout is not None else ""
    proc.wait(timeout=timeout)
    for r in readers:
        r.join(timeout=10)
    os.close(err_master)
    if out_master is not None:
        os.close(out_master)
    return Terminal(proc.returncode, b"".join(err).decode(), b"".join(out).decode(), piped)


def batch_args(p: LocalPebble, path: Path, *extra: str) -> list[str]:
    return ["batch", str(path), "--directory", p.directory_url, "--ca-bundle", p.ca_bundle,
            "--dns-resolver", p.dns_resolver, "--timeout", "60", "--http-01-port",
            str(p.http_port), "--http-01-address", "127.0.0.1", *extra]


@pytest.fixture
def customers(pebble: LocalPebble, tmp_path: Path) -> tuple[Path, list[str], list[int]]:
    """Eight certificates, run one at a time; lines 3 and 6 point where nothing listens."""
    batch = next(_batches)
    names = [f"c{i}-{batch}-{os.getpid()}.tty.example.com" for i in range(8)]
    broken = [3, 6]
    for line in broken:
        pebble.add_a(names[line - 1], ["127.0.0.2"])
    path = tmp_path / "names.txt"
    path.write_text("\n".join(names) + "\n")
    return path, names, broken


def fits(screen: list[str], columns: int) -> bool:
    """Every line fits, but for a single word too long for any line (a URL), kept whole."""
    over = [line for line in screen if len(line) > columns and " " in line.strip()]
    assert not over, over
    return True


def block_after(lines: list[str], start: str) -> list[str]:
    """The lines from the one starting with ``start`` up to the next unindented line."""
    i = next(i for i, line in enumerate(lines) if line.startswith(start))
    block = [lines[i]]
    for line in lines[i + 1:]:
        if not line.startswith(" "):
            break
        block.append(line)
    return block


def test_on_a_terminal_failures_show_above_the_bar_and_no_json_reaches_the_screen(
    pebble: LocalPebble, customers: tuple[Path, list[str], list[int]]
) -> None:
    path, names, broken = customers
    term = on_terminal(batch_args(pebble, path, "--concurrency", "1"))
    assert term.returncode == 1, term.raw_err
    assert term.raw_out == "", "stdout is a terminal: no JSON Lines there"
    screen = term.screen
    assert any("stdout is a terminal, so no JSON Lines are written" in line for line in screen)
    for line in broken:
        name = names[line - 1]
        block = block_after(screen, f"line {line}: ")
        assert block[0] == f"line {line}: {name}  client_error"
        assert block[1].startswith("  FATAL ValidationConnection (client's fault, challenge)")
        text = " ".join(b.strip() for b in block)
        assert f"FATAL ValidationConnection (client's fault, challenge) [{name}]" in text
        assert any(b.startswith("      hint: The CA could not connect") for b in block[2:])
        # Printed as it happened: the bar was on screen and was erased for it.
        assert f"\r\x1b[Kline {line}: " in term.raw_err
    # Successes are counted on the bar, not listed.
    assert not any(line.startswith(("line 1:", "line 2:", "line 8:")) for line in screen)
    bar = [line for line in screen if line.startswith("[")]
    assert bar
    assert bar[-1].endswith("8/8  ok 6  client 2  staging 0")
    tail = screen[screen.index(bar[-1]) + 1:]
    assert f"{'client_error':<16}  {2:>6}" in tail
    assert tail[-2:] == ["most frequent problems:", f"  ValidationConnection  {2:>6}"]


@pytest.mark.parametrize("columns", [80, 52])
def test_on_a_terminal_with_stdout_piped_json_goes_there_and_text_wraps_between_words(
    pebble: LocalPebble, customers: tuple[Path, list[str], list[int]], columns: int
) -> None:
    path, names, broken = customers
    term = on_terminal(batch_args(pebble, path, "--concurrency", "1"), columns=columns,
                       stdout_tty=False)
    assert term.returncode == 1, term.raw_err
    reports = [json.loads(line) for line in term.piped_out.splitlines()]
    assert sorted(r["identifiers"][0] for r in reports) == sorted(names)
    screen = term.screen
    assert fits(screen, columns)
    by_name = {r["identifiers"][0]: r for r in reports}
    for line in broken:
        problem = next(p for p in by_name[names[line - 1]]["problems"]
                       if p["severity"] == "fatal")
        block = block_after(screen, f"line {line}: ")
        hint = block[next(i for i, b in enumerate(block) if b.startswith("      hint: ")):]
        # Hanging indent, and rejoined it is the hint word for word: no word was cut.
        assert len(hint) > 1
        assert all(h.startswith(" " * 12) for h in hint[1:])
        assert " ".join(h.strip() for h in hint) == f"hint: {problem['hint']}"


def test_check_on_a_narrow_terminal_wraps_detail_and_hint_and_piped_keeps_them_whole(
    pebble: LocalPebble, unique_name: str
) -> None:
    pebble.add_a(unique_name, ["127.0.0.2"])
    args = ["check", "-d", unique_name, "--directory", pebble.directory_url, "--ca-bundle",
            pebble.ca_bundle, "--dns-resolver", pebble.dns_resolver, "--http-01-port",
            str(pebble.http_port), "--http-01-address", "127.0.0.1", "--timeout", "60",
            "--json"]
    term = on_terminal(args, columns=60, stdout_tty=False)
    assert term.returncode == 1, term.raw_err
    fatal = next(p for p in json.loads(term.piped_out)["problems"] if p["severity"] == "fatal")
    screen = term.screen
    assert fits(screen, 60)
    block = block_after(screen, "FATAL ValidationConnection")
    hint_at = next(i for i, b in enumerate(block) if b.startswith("    hint: "))
    # The header's own continuation is indented 2, the detail 4 (then 6), the hint 4 (10).
    detail_at = next(i for i, b in enumerate(block) if b.startswith("    "))
    assert all(b.startswith("  ") and b[2] != " " for b in block[1:detail_at])
    assert " ".join(b.strip() for b in block[detail_at:hint_at]) == fatal["detail"]
    assert " ".join(b.strip() for b in block[hint_at:]) == f"hint: {fatal['hint']}"
    assert any(b.startswith("          ") for b in block[hint_at + 1:]), "a hanging indent"
    # Piped (a log, a CI job): each on one line, for grep.
    piped = subprocess.run([sys.executable, "-m", "acmedryrun", *args], capture_output=True,
                           text=True, timeout=120, check=False)
    assert f"    hint: {fatal['hint']}\n" in piped.stderr
