"""Untrusted input in, safe output out: no write through a link, no report lost to a corrupt profile, no escapes.

No terminal control characters from logs, sidecars or file names reach the output. Issue 18, items 7, 8
and 9. Profiles are real memray files; the corrupt one under ``tests/data/memray`` is a real raw (never
closed) profile with one byte changed, on which memray's native reader dies by a signal.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from udfmem.analysis.profile import ProfileSummary
from udfmem.commands import _profile_reader
from udfmem.commands.diagnose import load
from udfmem.reporters import png

pytest.importorskip("memray")
DATA = Path(__file__).parent / "data"
CRASHING = DATA / "memray" / "crashes-reader.bin"
"""A raw memray profile with one byte changed (offset 883, 0x41 -> 0xe0): memray's reader dies on it (SIGSEGV or
SIGABRT, "free(): invalid next size", depending on the heap's layout)."""

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
"""Any control character but the newline udfmem writes itself."""
HOSTILE = "\x1b[2J\x07\r\nudf Ok: all healthy\x9b31m"
"""Clear screen, bell, a forged line, a C1 CSI."""
ESCAPED = r"\x1b[2J\x07\x0d\x0audf Ok: all healthy\x9b31m"
"""How :data:`HOSTILE` must be printed."""

READ = """
import sys, memray
reader = memray.FileReader(sys.argv[1])
reader.metadata
for record in reader.get_leaked_allocation_records(merge_threads=True):
    record.stack_trace()
"""
PROFILE = """
import sys, memray
with memray.Tracker(sys.argv[1], trace_python_allocators=True):
    kept = [bytearray(1 << 20) for _ in range(4)]
"""


def memray_profile(path: Path) -> Path:
    """A real, closed memray profile at ``path`` (4 MiB still allocated at the end)."""
    subprocess.run([sys.executable, "-c", PROFILE, str(path)], check=True, timeout=300)
    return path


def udfmem(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m udfmem ARGS`` in a fresh process."""
    argv = [sys.executable, "-m", "udfmem", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


# -- item 7: --flamegraph never writes through a link -------------------------------------------------------


@pytest.mark.parametrize("victim_exists", [True, False], ids=["existing-victim", "dangling-link"])
def test_flamegraph_replaces_a_planted_link_and_never_writes_through_it(tmp_path: Path, victim_exists: bool) -> None:
    """A link planted at the flame graph's name (``p.html`` for ``p.bin``) is replaced; its target is untouched."""
    profile = memray_profile(tmp_path / "p.bin")
    victim = tmp_path / "victim.txt"
    if victim_exists:
        victim.write_text("precious")
    html = tmp_path / "p.html"
    html.symlink_to(victim)
    proc = udfmem("report", "--json", "--flamegraph", profile)
    assert 0 == proc.returncode, proc.stderr
    (summary,) = json.loads(proc.stdout)
    assert str(html) == summary["flamegraph"]
    assert ("precious" if victim_exists else None) == (victim.read_text() if victim.exists() else None)
    assert not html.is_symlink() and html.is_file() and html.stat().st_size > 1000
    expected = {"p.bin", "p.html"} | ({"victim.txt"} if victim_exists else set())
    assert expected == set(os.listdir(tmp_path))  # no temporary file or directory left behind


# -- item 9: a profile that crashes memray's reader costs that file only ---------------------------------------


def test_the_shipped_corrupt_profile_crashes_memrays_reader() -> None:
    """The premise of the isolation test: read in a bare process, memray dies on the file by a signal.

    When a memray release stops crashing on it, replace the file (a byte flipped in a small raw profile, a few
    hundred tries) so that the next test still exercises a crash.
    """
    proc = subprocess.run([sys.executable, "-c", READ, str(CRASHING)], capture_output=True, timeout=300, check=False)
    assert proc.returncode < 0, f"memray exited {proc.returncode}: the file no longer crashes its reader"


def test_a_profile_that_crashes_the_reader_is_named_and_the_others_still_report(tmp_path: Path) -> None:
    """[good, crashing, good]: both good profiles are summarized, the crashing one is one stderr line, exit 2."""
    first = memray_profile(tmp_path / "first.bin")
    second = shutil.copy(first, tmp_path / "second.bin")
    proc = udfmem("report", "--json", first, CRASHING, second)
    assert 2 == proc.returncode
    assert [str(first), str(second)] == [s["path"] for s in json.loads(proc.stdout)]
    (line,) = proc.stderr.splitlines()
    assert re.fullmatch(rf"udfmem report: cannot read {re.escape(str(CRASHING))}: reader crashed \(signal \d+.*", line)
    gate = udfmem("report", "--fail-on-per-call", first, CRASHING)
    assert 1 == gate.returncode
    assert "first.bin" in gate.stdout and "verdict:" in gate.stdout


def test_the_reader_is_restarted_after_a_crash_or_a_timeout(tmp_path: Path) -> None:
    """One reader child serves many files; after a crash, or a read past its time limit, a fresh one reads on.

    A real hang cannot be produced on demand: a time limit of 0 makes every read overdue instead.
    """
    good = memray_profile(tmp_path / "good.bin")
    with _profile_reader.ProfileReader() as reader:
        first = reader.read(str(good), top=3)
        with pytest.raises(_profile_reader.ReadFailed, match=r"^reader crashed \(signal \d+"):
            reader.read(str(CRASHING), top=3)
        assert first == reader.read(str(good), top=3)
    with (
        _profile_reader.ProfileReader(timeout_s=0) as overdue,
        pytest.raises(_profile_reader.ReadFailed, match=r"^reader took longer than 0s; stopped$"),
    ):
        overdue.read(str(good), top=3)
    assert isinstance(first, ProfileSummary) and 4.0 == pytest.approx(first.leaked_mb, abs=0.5)


def test_an_ordinary_unreadable_file_keeps_its_reason(tmp_path: Path) -> None:
    """A file memray refuses (not a profile) is still 'cannot read PATH: memray's reason', not a crash."""
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"not a memray file\n" * 10)
    proc = udfmem("report", bogus)
    assert 2 == proc.returncode
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"udfmem report: cannot read {bogus}: ") and "crashed" not in line


# -- item 8: no control character from input reaches the terminal --------------------------------------------


def assert_clean(*outputs: str) -> None:
    """No control character but newline in ``outputs``."""
    for out in outputs:
        assert [] == CONTROL.findall(out)


def hostile_log(tmp_path: Path) -> Path:
    r"""A real leaking worker's log whose udf, host and worker values carry control characters, in both formats.

    logfmt quotes values as JSON strings (``\u001b``); raw bytes in an unquoted value are read too.
    """
    lines = gzip.decompress((DATA / "diagnose" / "heap-leak-cache.log.gz").read_bytes()).decode().splitlines()
    quoted = json.dumps(HOSTILE)
    out = []
    for line in lines:
        if "event=udfmem." not in line:
            continue
        logfmt = re.sub(r"udf=\S+", lambda _: f"udf={quoted}", line)
        out.append(re.sub(r"host=\S+", "host=\x1b]0;pwned\x07", logfmt))
        fields: dict[str, Any] = {}
        for key, value in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line[line.index("event=") :]):
            fields[key] = json.loads(value) if value.startswith('"') else value
        fields.update(udf="json" + HOSTILE, worker="w\x1b[31m")
        out.append(json.dumps({k: _number(v) for k, v in fields.items()}))
    path = tmp_path / "hostile.log"
    path.write_text("\n".join(out) + "\n")
    return path


def _number(value: Any) -> Any:
    """``value`` as a number when it reads as one (the JSON renderer writes numbers as numbers)."""
    try:
        return int(value) if str(value).lstrip("-").isdigit() else float(value)
    except (TypeError, ValueError):
        return value


def test_diagnose_escapes_control_characters_from_the_log(tmp_path: Path) -> None:
    """ESC, BEL, CR, LF and C1 in udf, host and worker values are printed escaped, in text and in --json."""
    log = hostile_log(tmp_path)
    text = udfmem("diagnose", log)
    assert 0 == text.returncode, text.stderr
    assert_clean(text.stdout, text.stderr)
    assert ESCAPED in text.stdout and r"\x1b]0;pwned\x07" in text.stdout and r"w\x1b[31m" in text.stdout
    assert f"udf {ESCAPED}: " in text.stdout  # the forged "udf Ok" stays on the real line
    as_json = udfmem("diagnose", "--json", log)
    assert_clean(as_json.stdout)
    udfs = {w["udf"] for w in json.loads(as_json.stdout)["workers"]}
    assert {HOSTILE, "json" + HOSTILE} == udfs  # JSON keeps the value, escaped by the encoding


def test_plot_titles_are_escaped_and_never_parsed_as_math(tmp_path: Path) -> None:
    """Panel titles show control characters escaped; a ``$`` in a UDF name is text, not a mathtext error."""
    pytest.importorskip("matplotlib")
    log = hostile_log(tmp_path)
    dollars = tmp_path / "dollars.log"
    dollars.write_text(log.read_text().replace("udf Ok", "a$\\\\frac{$x"))
    titles = png.write(load([str(log)]), str(tmp_path / "hostile.png"))
    assert 4 == len(titles)  # two workers, each in logfmt and in JSON
    assert_clean(*titles)
    tails = [title.split("\n")[1] for title in titles]  # the pattern, then the UDF on one line of its own
    assert any(f"{ESCAPED} · \\x1b]0;pwned\\x07 pid" in tail for tail in tails)
    assert any(tail.startswith(f"json{ESCAPED} · ") for tail in tails)
    proc = udfmem("plot", dollars, "-o", tmp_path / "dollars\x1b[2J.png")
    assert 0 == proc.returncode, proc.stderr
    assert_clean(proc.stdout, proc.stderr)
    assert r"dollars\x1b[2J.png" in proc.stdout


def test_report_escapes_the_sidecar_and_the_file_name(tmp_path: Path) -> None:
    """A sidecar's udf and a profile's file name with control characters: text, Markdown and stderr escaped."""
    profile = memray_profile(tmp_path / "p\x1b[2J.bin")
    Path(str(profile) + ".json").write_text(json.dumps({"udf": HOSTILE, "pid": 7, "methods": ["__call__"]}))
    (tmp_path / "bogus\x07.bin").write_bytes(b"not a memray file\n" * 10)  # its name is echoed on stderr
    md = tmp_path / "summary.md"
    proc = udfmem("report", "--summary-md", md, tmp_path)
    assert 2 == proc.returncode
    assert_clean(proc.stdout, proc.stderr, md.read_text())
    assert f"udf={ESCAPED} pid=7" in proc.stdout and r"p\x1b[2J.bin" in proc.stdout
    assert r"bogus\x07.bin" in proc.stderr
    assert ESCAPED in md.read_text()
    (summary,) = json.loads(udfmem("report", "--json", profile).stdout)
    assert HOSTILE == summary["udf"]


def test_a_sidecar_of_the_wrong_shape_is_ignored(tmp_path: Path) -> None:
    """A sidecar that is a list, or whose fields have the wrong types, reads as no sidecar: the profile reports."""
    for i, sidecar in enumerate([[1, 2], {"udf": {"x": 1}, "pid": "7", "methods": 5, "setup": [1], "source": 3}]):
        profile = memray_profile(tmp_path / f"p{i}.bin")
        Path(f"{profile}.json").write_text(json.dumps(sidecar))
        proc = udfmem("report", "--json", profile)
        assert 0 == proc.returncode, proc.stderr
        (summary,) = json.loads(proc.stdout)
        assert (None, 4.0) == (summary["udf"], pytest.approx(summary["leaked_mb"], abs=0.5))
