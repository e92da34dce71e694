"""udfmem's own state and output stay bounded: per-name structures, the log file, the line length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import parse_events, run_python

import udfmem.testing
from udfmem import tracked
from udfmem.emit import emitter as _emit
from udfmem.events import schema as _events
from udfmem.events.parse import parse_line


def test_per_name_structures_are_forgotten_with_runtime_classes() -> None:
    """5,000 uniquely named classes defined, called and dropped: per-name structures and RSS do not grow with them.

    Emitters (a state's own and the shared defaults), the name sequences and the warning keys
    are bounded by the live states (64 recent ones, plus one the timer may be visiting) and
    the 64 default emitters kept; RSS grows by far less than the ~4 KiB per class it used to.
    """
    proc = run_python(
        """
        import gc, json, os, sys
        sys.stderr = open(os.devnull, "w")  # 5,000 final snapshots: not what is measured
        from udfmem import tracked
        from udfmem.emit import emitter as _emit
        from udfmem.runtime import registry as _registry
        from udfmem.runtime import state as _state

        def rss_mib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        def define_and_drop(i):
            cls = tracked(every=1000)(type(f"Runtime{i}", (), {"__call__": lambda self, x: x}))
            cls()(i)  # binds: the state makes its own emitter

        for i in range(1000):
            define_and_drop(i)
        gc.collect()
        before = rss_mib()
        for i in range(1000, 5000):
            define_and_drop(i)
        gc.collect()
        objects = gc.get_objects()
        print(json.dumps({
            "states": sum(isinstance(o, _state.UDFState) for o in objects),
            "emitters": sum(isinstance(o, _emit.Emitter) for o in objects),
            "names": _registry.names(),
            "warned": _emit.warned(),
            "grown_mib": rss_mib() - before,
        }))
        """,
        timeout=600,
    )
    counts = json.loads(proc.stdout)
    assert 64 <= counts["states"] <= 65, counts
    assert counts["emitters"] <= counts["states"] + 64, counts  # + the 64 default emitters kept; was 5,064
    assert counts["names"] <= counts["states"], counts  # was 5,000
    assert counts["warned"] <= 1001, counts
    assert counts["grown_mib"] < 6, counts  # 4,000 classes at ~4 KiB each grew ~16 MiB before


def test_a_name_defined_again_after_its_states_are_gone_gets_a_fresh_sequence() -> None:
    """Two live classes of one qualified name get their own keys; once both are gone the name starts afresh.

    The sequence is only needed while a state of that name lives (64 recent ones are kept).
    """
    proc = run_python(
        """
        import gc
        import udfmem.testing
        from udfmem import tracked

        def make():
            return tracked(type("Same", (), {"__call__": lambda self, x: x}))

        first, second = make(), make()
        keys = [udfmem.testing.state_of(first).key, udfmem.testing.state_of(second).key]
        del first, second
        others = [tracked(type(f"Other{i}", (), {"__call__": lambda self, x: x})) for i in range(64)]
        gc.collect()  # 64 UDFs decorated since: the two are no longer among the recent ones
        keys.append(udfmem.testing.state_of(make()).key)
        print(" ".join(keys))
        """
    )
    assert "__main__.Same __main__.Same#1 __main__.Same" == proc.stdout.strip()


def test_distinct_warnings_are_capped_per_process() -> None:
    """1,500 distinct warnings: the first 1,000 are emitted, then one saying further ones are dropped, then none."""
    emitter = _emit.default()
    with udfmem.testing.capture() as events:
        for i in range(1500):
            emitter.warn_once("test-flood", f"distinct warning {i}", once_key=f"test-flood:{i}")
    whats = [e["what"] for e in events if e["event"] == "udfmem.warning"]
    assert ["test-flood"] * 1000 + ["warnings-capped"] == whats
    assert 1001 == _emit.warned()


def test_forgotten_warnings_are_said_again() -> None:
    """``forget_warnings()`` (what ``udfmem.testing.reset()`` runs): a warning said once is said again, once."""
    emitter = _emit.default()
    with udfmem.testing.capture() as events:
        emitter.warn_once("test-again", "said once")
        emitter.warn_once("test-again", "said once")
        _emit.forget_warnings()
        emitter.warn_once("test-again", "said once")
        emitter.warn_once("test-again", "said once")
    assert ["test-again", "test-again"] == [e["what"] for e in events if e["event"] == "udfmem.warning"]


def test_a_removed_log_dir_is_made_again_and_no_line_is_lost(tmp_path: Path) -> None:
    """UDFMEM_LOG_DIR removed after 50 calls: calls 51-100 land in a re-created file, none in the deleted one."""
    logs = tmp_path / "logs"
    proc = run_python(
        f"""
        import shutil
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {{"__call__": lambda self, x: x + 1}}))
        udf = Udf()
        first = [udf(i) for i in range(50)]
        shutil.rmtree({str(logs)!r})
        print("RESULT", first + [udf(i) for i in range(50, 100)] == list(range(1, 101)))
        """,
        env={"UDFMEM_LOG_DIR": str(logs)},
    )
    assert "RESULT True" in proc.stdout
    assert [] == parse_events(proc.stderr, "udfmem.warning")
    (jsonl,) = logs.glob("*.jsonl")
    calls = [e["call"] for e in parse_events(jsonl.read_text(), "udfmem.snapshot", finals=False)]
    assert list(range(51, 101)) == calls


def test_a_link_planted_after_the_file_was_deleted_is_refused(tmp_path: Path) -> None:
    """The JSON-lines file deleted and a link planted at its name: the target stays untouched, one warning."""
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    logs = tmp_path / "logs"
    proc = run_python(
        f"""
        import glob, os
        import udfmem
        Udf = udfmem.tracked(every=1)(type("Udf", (), {{"__call__": lambda self, x: x + 1}}))
        udf = Udf()
        udf(0)
        (path,) = glob.glob(os.path.join({str(logs)!r}, "*.jsonl"))
        os.unlink(path)
        os.symlink({str(target)!r}, path)
        print("RESULT", [udf(i) for i in range(1, 4)])
        """,
        env={"UDFMEM_LOG_DIR": str(logs)},
    )
    assert "RESULT [2, 3, 4]" in proc.stdout
    assert "keep me\n" == target.read_text()
    assert ["log-dir-failed"] == [w["what"] for w in parse_events(proc.stderr, "udfmem.warning")]


LONG_NAME = "Embed" + "\N{GRINNING FACE}" * 500 + "x" * 4500  # ~5 KB; an emoji is 12 bytes once JSON-escaped


def test_sixteen_workers_on_one_stderr_pipe_never_tear_a_line(tmp_path: Path) -> None:
    """16 processes, a 5 KB class name and a 100 KB bad UDFMEM_TRIM, writing to one pipe: every line whole.

    Each line read back parses, is at most PIPE_BUF (4096) bytes with its newline, every
    snapshot arrives, and all workers log the same capped name (cut the same way everywhere).
    """
    script = tmp_path / "worker.py"
    script.write_text(
        "import udfmem\n"
        f"Udf = udfmem.tracked(every=1)(type({LONG_NAME!r}, (), {{'__call__': lambda self, x: x}}))\n"
        "udf = Udf()\n"
        "for i in range(200):\n"
        "    udf(i)\n",
        encoding="utf-8",
    )
    read_end, write_end = os.pipe()
    base = {k: v for k, v in os.environ.items() if not k.startswith("UDFMEM_")}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            stderr=write_end,
            env={**base, "UDFMEM_TRIM": "x" * 100_000, "UDFMEM_LOG_FORMAT": ("logfmt", "json")[i % 2]},
        )
        for i in range(16)
    ]
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    assert [0] * 16 == [w.wait(timeout=600) for w in workers]
    lines = raw.split(b"\n")[:-1]
    assert [] == [line[:120] for line in lines if len(line) + 1 > 4096]
    events = [parse_line(line.decode("ascii")) for line in lines]
    assert [] == [line[:120] for line, event in zip(lines, events, strict=True) if event is None]
    snapshots = [e for e in events if e is not None and e["event"] == "udfmem.snapshot" and not e.get("final")]
    assert 16 * 200 == len(snapshots)
    warnings = [e for e in events if e is not None and e["event"] == "udfmem.warning"]
    assert ["UDFMEM_TRIM"] * 16 == [w["var"] for w in warnings]
    assert all("...[+" in w["message"] for w in warnings)  # the value is echoed capped
    (name,) = {e["udf"] for e in events if e is not None}
    assert 200 >= len(name) and name.startswith("Embed\N{GRINNING FACE}") and "chars #" in name


def test_diagnose_groups_workers_by_the_capped_name(tmp_path: Path) -> None:
    """Two workers (logfmt, JSON) of a class with a 5 KB non-ASCII name: diagnose finds both under one capped name."""
    logs = []
    for fmt in ("logfmt", "json"):
        proc = run_python(
            f"""
            import udfmem
            Udf = udfmem.tracked(every=1)(type({LONG_NAME!r}, (), {{"__call__": lambda self, x: x}}))
            udf = Udf()
            for i in range(20):
                udf(i)
            """,
            env={"UDFMEM_LOG_FORMAT": fmt},
        )
        logs.append(proc.stderr)
    (tmp_path / "workers.log").write_text("".join(logs), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "udfmem", "diagnose", "--json", str(tmp_path / "workers.log")],
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert 0 == out.returncode, out.stderr
    names = [w["udf"] for w in json.loads(out.stdout)["workers"]]
    assert 2 == len(names) and 1 == len(set(names)), names
    assert 200 >= len(names[0]) and names[0].startswith("Embed\N{GRINNING FACE}") and "chars #" in names[0]


def test_an_overlong_name_argument_is_capped_not_refused() -> None:
    """``name=`` of 5,000 characters decorates fine; the name is cut to 200 with a digest, so distinct names stay so."""
    first = tracked(name="n" * 5000 + "a")(type("A", (), {"__call__": lambda self, x: x}))
    second = tracked(name="n" * 5000 + "b")(type("B", (), {"__call__": lambda self, x: x}))
    names = [udfmem.testing.state_of(cls).name for cls in (first, second)]
    assert [200, 200] == [len(n) for n in names]
    assert names[0] != names[1]
    assert "n" * 100 == names[0][:100]


def test_long_event_texts_are_cut_to_fit_one_atomic_write(capsys: pytest.CaptureFixture[str]) -> None:
    """A 100 KB warning message (an exception repr) and a 5 KB path: each line fits PIPE_BUF and parses."""
    emitter = _emit.default("Udf")
    capsys.readouterr()
    emitter.warn_once("test-long", "failed: " + repr(ValueError("\N{GRINNING FACE}" * 50_000)))
    emitter.emit(_events.Memray(action="started", path="/" + "d\N{GRINNING FACE}" * 2500))
    lines = capsys.readouterr().err.splitlines()
    assert 2 == len(lines)
    assert [True, True] == [len(line.encode()) + 1 <= 4096 for line in lines]
    events = [parse_line(line) for line in lines]
    assert ["udfmem.warning", "udfmem.memray"] == [e["event"] if e else None for e in events]
