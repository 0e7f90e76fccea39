"""The history (:mod:`nbstream.store`): every answer recorded in SQLite, whatever its ending,
without making the stream wait; several processes writing one file; reading it back with
``nbstream.history()`` and ``%llm history``. Kernel tests interrupt and stop real cells."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbstream
from nbstream import store
from nbstream.settings import Settings, resolve

OPENAI_KEY = "sk-test-history-SECRET-0123456789"


@pytest.fixture
def keys(monkeypatch, fake_llm):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    for name in ("NBSTREAM_MODEL", "NBSTREAM_CACHE"):
        monkeypatch.delenv(name, raising=False)


def rows_of(path: Path, *, at_least: int = 1, timeout: float = 15.0) -> list[dict]:
    """The rows of ``path`` once there are ``at_least`` (other processes write on their own
    time)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = store.read(path, n=None)
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def ask(model, path, **options):
    return nbstream.ask_sync(
        "Say hello", model=f"openai:{model}", display="none", history=str(path), **options
    )


# -- what a row holds ---------------------------------------------------------------------------


def test_an_answer_is_recorded_with_what_was_asked(keys, fake_llm, tmp_path, ip):
    path = tmp_path / "h.sqlite"
    model = fake_llm.script(tokens=["Hi ", "there"], usage={"input_tokens": 6, "output_tokens": 2})
    ip.user_ns["topic"] = "entropy"
    ip.run_cell_magic(
        "llm",
        f"-m openai:{model} -s 'Be brief.' -t 0.3 --display none --history {path} -o ans",
        "Explain {topic}.",
    )
    (row,) = rows_of(path)
    r = ip.user_ns["ans"]
    assert row["prompt"] == "Explain entropy." == r.prompt  # after interpolation
    assert (row["system"], row["model"], row["text"]) == ("Be brief.", f"openai:{model}", r)
    assert row["finish_reason"] == "stop" and row["error"] is None
    assert row["options"]["temperature"] == 0.3 and row["options"]["display"] == "none"
    assert "system" not in row["options"] and "model" not in row["options"]
    assert row["usage"] == {"input_tokens": 6, "output_tokens": 2} == r.usage
    assert (row["input_tokens"], row["output_tokens"]) == (6, 2)
    assert row["cost"] is None and row["cached"] is False  # nobody priced the fake model
    assert row["ttft"] == pytest.approx(r.ttft) and row["elapsed"] == pytest.approx(r.elapsed)
    assert row["chunks"] == 2 and row["pid"] == os.getpid()
    assert row["prompt_sha256"] == store.sha256("Explain entropy.")
    assert len(row["request_key"]) == 64 and row["nbstream_version"] == nbstream.__version__
    assert row["notebook"] is None and row["cell_id"] is None  # no front end here
    assert row["created"].endswith("+00:00")
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("h.sqlite-*"))
    assert OPENAI_KEY.encode() not in raw


def test_failed_and_cached_answers_are_recorded_too(keys, fake_llm, tmp_path):
    path = tmp_path / "h.sqlite"
    broken = fake_llm.script(tokens=["a ", "b ", "c ", "d "], drop_after=2)
    r = ask(broken, path)
    fine = fake_llm.script(tokens=["ok"])
    ask(fine, path, cache="auto", cache_dir=str(tmp_path / "c"))
    ask(fine, path, cache="auto", cache_dir=str(tmp_path / "c"))
    failed, first, replayed = rows_of(path, at_least=3)
    assert failed["finish_reason"] == "error" and failed["text"] == "a b " == r
    assert "without its completion event" in failed["error"] and failed["usage"] is None
    assert first["cached"] is False and replayed["cached"] is True
    assert replayed["cost"] == 0.0 and replayed["request_key"] == first["request_key"]


def test_options_are_recorded_without_secrets():
    settings = Settings(base_url="http://user:hunter2@proxy:8080/v1", max_tokens=5)
    options = store.options_of(settings)
    assert options == {"base_url": "http://***@proxy:8080/v1", "max_tokens": 5}


# -- where, and off ------------------------------------------------------------------------------


def test_the_default_file_is_in_the_user_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert store.history_path(None) == tmp_path / "nbstream" / "history.sqlite"
    assert store.history_path("~/h.sqlite") == Path.home() / "h.sqlite"


def test_history_off_records_nothing(keys, fake_llm, tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    monkeypatch.setenv("NBSTREAM_HISTORY", str(path))
    assert resolve({}, {}, {"NBSTREAM_HISTORY": "off"}).history == "off"
    assert resolve({}, {}, {"NBSTREAM_HISTORY": "OFF"}).history == "off"
    model = fake_llm.script(tokens=["x"])
    r = nbstream.ask_sync("hi", model=f"openai:{model}", display="none", history="off")
    assert r == "x" and store.flush() and not path.exists()
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")
    nbstream.ask_sync("hi", model=f"openai:{model}", display="none")
    assert store.flush() and not path.exists()
    with pytest.raises(ValueError, match="the history is off"):
        nbstream.history()


# -- never blocking, never losing ---------------------------------------------------------------


def test_a_locked_file_does_not_hold_up_the_answer(keys, fake_llm, tmp_path):
    path = tmp_path / "h.sqlite"
    store.connect(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the file
    try:
        model = fake_llm.script(tokens=["quick"])
        started = time.monotonic()
        r = ask(model, path)
        took = time.monotonic() - started
        assert r == "quick" and took < 2.0, took
        time.sleep(0.3)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    (row,) = rows_of(path)  # written once the lock was released
    assert row["text"] == "quick"


def test_a_damaged_history_file_warns_once_and_keeps_every_answer(keys, fake_llm, tmp_path, ip):
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database, someone edited it\n" * 50)
    model = fake_llm.script(tokens=["kept"])
    with pytest.warns(RuntimeWarning, match="damaged") as seen:
        first, second = ask(model, path), ask(model, path)
    assert first == second == "kept" and first.finish_reason == "stop"
    messages = [str(w.message) for w in seen if "history" in str(w.message)]
    assert len(messages) == 1 and str(path) in messages[0] and "rename" in messages[0]
    with pytest.raises(nbstream.HistoryError, match="damaged") as info:
        nbstream.history(path=path)
    assert "rename it to h.sqlite.bad" in str(info.value) and "\n" not in str(info.value)
    from IPython.core.error import UsageError

    ip.run_line_magic("config", f"LLMMagics.history = {str(path)!r}")
    try:
        with pytest.raises(UsageError, match="is damaged"):
            ip.run_line_magic("llm", "history")
    finally:
        ip.run_line_magic("config", "LLMMagics.history = None")


def test_reading_a_file_locked_by_another_process_waits_about_a_second(tmp_path):
    path = tmp_path / "h.sqlite"
    fill(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # a reader then needs the shared lock
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    blocker.execute("INSERT INTO answers (created) VALUES ('2026-12-07T00:00:00+00:00')")
    try:
        started = time.monotonic()
        with pytest.raises(nbstream.HistoryError, match="locked by another process") as info:
            store.history(path=path)
        took = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert took < 5.0, took  # was 30-40 s, then a raw OperationalError
    assert "Try again in a moment" in str(info.value)
    assert len(store.history(path=path)) == 4  # released: readable again


def test_llm_history_0_is_a_usage_error_not_no_answers(tmp_path, ip):
    from IPython.core.error import UsageError

    path = tmp_path / "h.sqlite"
    fill(path)
    ip.run_line_magic("config", f"LLMMagics.history = {str(path)!r}")
    try:
        with pytest.raises(UsageError, match="1 or more"):
            ip.run_line_magic("llm", "history 0")
    finally:
        ip.run_line_magic("config", "LLMMagics.history = None")


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from nbstream import store

    path, name = Path(sys.argv[1]), sys.argv[2]
    for i in range(200):
        store.record(path, {"created": "2026-11-25T00:00:00+00:00", "model": "w:" + name,
                            "prompt": f"{name} {i}", "text": "x" * 200, "finish_reason": "stop"})
    # no flush: the queue is drained at exit
    """
)


def test_two_processes_write_one_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Warning" not in err, err
    rows = store.read(path, n=None)
    assert len(rows) == 400
    by_writer = {m: [r["prompt"] for r in rows if r["model"] == m] for m in ("w:a", "w:b")}
    assert by_writer["w:a"] == [f"a {i}" for i in range(200)]  # in order, none lost
    assert by_writer["w:b"] == [f"b {i}" for i in range(200)]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_an_answer_right_before_exit_is_kept(keys, fake_llm, tmp_path):
    path = tmp_path / "h.sqlite"
    model = fake_llm.script(tokens=["last ", "words"])
    code = (
        f"import nbstream; nbstream.ask_sync('bye', model='openai:{model}', display='none', "
        f"history={str(path)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=os.environ.copy())
    (row,) = store.read(path, n=None)
    assert row["text"] == "last words" and row["finish_reason"] == "stop"


# -- reading it back -----------------------------------------------------------------------------


def fill(path: Path) -> None:
    rows = [
        {"prompt": "Explain entropy", "text": "Entropy is disorder.", "model": "openai:a"},
        {"prompt": "Summarise df", "text": "The median is 42.", "model": "openai:b"},
        {"prompt": "Say 100%_done", "text": "ok", "model": "anthropic:c", "cost": 0.5},
        {"prompt": "Translate", "text": "", "error": "HTTP 500 ENTROPY", "model": "openai:a"},
    ]
    conn = store.connect(path)
    store.insert(
        conn,
        [
            {"created": f"2026-11-25T10:0{i}:00+00:00", "finish_reason": "stop", **row}
            for i, row in enumerate(rows)
        ],
    )
    conn.close()


def test_history_returns_a_dataframe(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    fill(path)
    monkeypatch.setenv("NBSTREAM_HISTORY", str(path))
    frame = nbstream.history()
    prompts = ["Explain entropy", "Summarise df", "Say 100%_done", "Translate"]
    assert list(frame["prompt"]) == prompts
    assert frame.index.name == "id" and str(frame["created"].dtype).startswith("datetime64")
    assert list(nbstream.history(n=2)["prompt"]) == ["Say 100%_done", "Translate"]
    # search: prompt, answer, error, model; case-insensitive; % and _ are plain characters
    assert list(nbstream.history(search="entropy")["prompt"]) == ["Explain entropy", "Translate"]
    assert list(nbstream.history(search="0%_")["prompt"]) == ["Say 100%_done"]
    assert list(nbstream.history(search="anthropic")["cost"]) == [0.5]
    assert len(nbstream.history(search="nowhere")) == 0


def test_history_without_pandas_is_a_list_of_dicts(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    fill(path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    rows = store.history(3, path=path)
    assert isinstance(rows, list) and rows[0]["prompt"] == "Summarise df"
    assert rows[-1]["error"] == "HTTP 500 ENTROPY" and rows[-1]["cached"] is False
    assert store.history(path=tmp_path / "missing.sqlite") == []


def test_llm_history_prints_a_compact_table(tmp_path, monkeypatch, ip, capsys):
    path = tmp_path / "h.sqlite"
    fill(path)
    ip.run_line_magic("config", f"LLMMagics.history = {str(path)!r}")
    try:
        ip.run_line_magic("llm", "history 2")
        out = capsys.readouterr().out.splitlines()
        assert out[0].split()[:4] == ["id", "when", "model", "ending"]
        assert "Say 100%_done → ok" in out[1] and "$0.5000" in out[1]
        assert "Translate → [HTTP 500 ENTROPY]" in out[2]
        assert out[3] == f"(2 answer(s) from {path})"
        ip.run_line_magic("llm", "history --search median")
        out = capsys.readouterr().out
        assert "Summarise df → The median is 42." in out and "entropy" not in out
        ip.run_line_magic("llm", "history --search 'no such thing'")
        assert "no answers matching 'no such thing'" in capsys.readouterr().out
        from IPython.core.error import UsageError

        with pytest.raises(UsageError, match="history"):
            ip.run_line_magic("llm", "history many")
    finally:
        ip.run_line_magic("config", "LLMMagics.history = None")


def test_llm_config_shows_the_history_file(ip, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NBSTREAM_HISTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    ip.run_line_magic("llm", "config")
    out = capsys.readouterr().out
    assert f"{tmp_path / 'nbstream' / 'history.sqlite'}  (default)" in out


# -- in a kernel: interrupt, Stop, the cell id ----------------------------------------------------


def start_cell(kernel, fake_llm, *, cell_id, tokens=400, delay=0.02, **script):
    model = fake_llm.script(tokens=[f"w{i} " for i in range(tokens)], delay=delay, **script)
    before = len(kernel.comm_opens())
    execution = kernel.submit(f"%%llm -m openai:{model}\nCount.", metadata={"cellId": cell_id})
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the live widget")
    comm_id = kernel.comm_opens()[-1]["content"]["comm_id"]
    return model, execution, comm_id


def pushes(kernel, comm_id):
    return [m for m in kernel.custom_messages(comm_id) if m["type"] in ("update", "reset")]


@pytest.mark.kernel
def test_interrupted_stopped_and_failed_cells_are_recorded(llm_kernel, fake_llm, tmp_path):
    kernel = llm_kernel
    path = tmp_path / "kernel.sqlite"
    kernel.run_ok(
        f"%config LLMMagics.history = {str(path)!r}\n"
        "import os; os.environ['JPY_SESSION_NAME'] = '/work/analysis.ipynb'"
    )
    try:
        # interrupt (■)
        model, execution, comm_id = start_cell(kernel, fake_llm, cell_id="cell-interrupt")
        kernel.wait_until(lambda: len(pushes(kernel, comm_id)) >= 4, 30, "streaming")
        kernel.interrupt()
        kernel.wait(execution, 30)
        assert execution.error()["ename"] == "KeyboardInterrupt"
        (row,) = rows_of(path)
        assert row["finish_reason"] == "cancelled" and row["text"].startswith("w0 w1 ")
        assert row["cell_id"] == "cell-interrupt" and row["notebook"] == "/work/analysis.ipynb"
        assert row["model"] == f"openai:{model}" and row["cost"] is None

        # the Stop button
        _model, execution, comm_id = start_cell(kernel, fake_llm, cell_id="cell-stop")
        kernel.wait_until(lambda: len(pushes(kernel, comm_id)) >= 4, 30, "streaming")
        kernel.send_custom(comm_id, {"event": "stop"})
        kernel.wait(execution, 30)
        assert execution.status == "ok"
        row = rows_of(path, at_least=2)[-1]
        assert row["finish_reason"] == "cancelled" and row["cell_id"] == "cell-stop"

        # a failure
        _model, execution, _ = start_cell(
            kernel, fake_llm, cell_id="cell-error", tokens=20, delay=0.0, drop_after=5
        )
        kernel.wait(execution, 30)
        row = rows_of(path, at_least=3)[-1]
        assert row["finish_reason"] == "error" and row["text"] == "w0 w1 w2 w3 w4 "
        assert row["cell_id"] == "cell-error" and "completion event" in row["error"]

        # and the kernel reads its own history
        out = kernel.run_ok(
            "h = __import__('nbstream').history(5)\n"
            "rows = h.to_dict('records') if hasattr(h, 'to_dict') else h  # pandas or not\n"
            "print([r['cell_id'] for r in rows], [r['finish_reason'] for r in rows])"
        ).stdout()
        assert out.strip() == (
            "['cell-interrupt', 'cell-stop', 'cell-error'] ['cancelled', 'cancelled', 'error']"
        )
    finally:
        kernel.run_ok("%config LLMMagics.history = None\nos.environ.pop('JPY_SESSION_NAME', None)")
    assert json.dumps(store.read(path, n=None)).count(OPENAI_KEY[:12]) == 0


def test_a_file_of_an_older_version_gets_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    old = {k: v for k, v in store.COLUMNS.items() if k not in ("tool_calls", "media", "thinking")}
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"CREATE TABLE answers ({', '.join(f'{k} {v}' for k, v in old.items())})")
        conn.execute("INSERT INTO answers (created, prompt, cached) VALUES ('2026-01-01', 'p', 0)")
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    store.connect(path).close()
    rows = store.read(path, None)
    assert rows[0]["prompt"] == "p" and rows[0]["tool_calls"] is None
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
    conn.close()


def test_the_history_is_pruned_by_age_and_by_size(tmp_path, ip, capsys):
    from datetime import datetime, timedelta, timezone

    from nbstream import retention

    path = tmp_path / "big.sqlite"
    conn = store.connect(path)
    now = datetime.now(timezone.utc)
    rows = [
        {"created": (now - timedelta(days=200 - i)).isoformat(), "prompt": f"p{i}",
         "text": "x" * 4000, "finish_reason": "stop", "cached": False}
        for i in range(200)
    ]  # fmt: skip
    store.insert(conn, rows)
    conn.close()
    by_age = retention.prune(path, retention.parse_cap("30.5d"))
    assert by_age.removed == 170 and by_age.kept == 30  # 30 days old or younger stay
    assert by_age.bytes_after < by_age.bytes_before  # compacted
    assert [r["prompt"] for r in store.read(path, 1)] == ["p199"]  # the newest is kept
    by_size = retention.prune(path, retention.parse_cap("0.05MB"))
    assert by_size.kept < 30 and path.stat().st_size <= 80_000
    with pytest.raises(ValueError, match="'90x': write an age as '90d'"):
        retention.parse_cap("90x")
    ip.run_line_magic("config", f"LLMMagics.history = {str(path)!r}")
    try:
        ip.run_line_magic("llm", "history --prune")
        assert "give a cap" in capsys.readouterr().out
        ip.run_line_magic("llm", "history --prune 1d")
        assert "pruned" in capsys.readouterr().out
    finally:
        ip.run_line_magic("config", "LLMMagics.history = None")
