"""``%llm fix`` / ``%%llm --fix`` and what the notebook watcher records (``--cells``,
``{last_figure}``), in the test process's IPython shell against the test server."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from fake_llm_fixture import point_sdks_at
from nbstream.notebook import fix
from nbstream.prompts import cells

FIXED = "The column is `price`, not `prices`.\n\n```python\ntotal = df['price'].sum()\n```\n"
FIXED_PLAIN = "The key is `price`.\n\n```python\ntotal = sum(df['price'])\n```\n"


@pytest.fixture(autouse=True)
def _setup(monkeypatch, fake_llm, tmp_path, ip):
    point_sdks_at(monkeypatch, fake_llm, "sk-fix-openai", "sk-ant-fix")
    monkeypatch.setenv("NBSTREAM_HISTORY", "off")
    cells.reset()
    yield
    cells.reset()


def run(ip, source):
    return ip.run_cell(source, store_history=True)


def test_a_pandas_key_error_is_sent_with_the_trimmed_traceback_and_the_frame(ip, fake_llm):
    pd = pytest.importorskip("pandas")
    ip.user_ns["pd"] = pd
    run(ip, "df = pd.DataFrame({'price': [1.5, 2.0], 'qty': [3, 4]})")
    result = run(ip, "x = 1\ntotal = df['prices'].sum()")
    assert result.error_in_exec is not None
    record = fix.failing_cell()
    assert record is not None and record.error is not None
    error = record.error
    assert error.type == "KeyError" and "prices" in error.message
    assert error.line == 2 and error.code == "total = df['prices'].sum()"
    assert "inside libraries" in error.traceback  # pandas' frames counted, not listed
    assert error.traceback.count("the cell, line 2") == 1
    assert "DataFrame, shape (2, 2)" in error.variables["df"]
    assert "price (float64)" in error.variables["df"]

    model = fake_llm.script(text=FIXED)
    ip.run_line_magic("llm", f"fix -m openai:{model} --display none")
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert "Error: KeyError: 'prices'" in sent
    assert "Failing line 2: total = df['prices'].sum()" in sent
    assert "- df: pandas" in sent and "DataFrame, shape (2, 2)" in sent
    assert "```python\nx = 1\ntotal = df['prices'].sum()\n```" in sent
    assert "1.5" not in sent  # the data itself is never sent
    assert ip.rl_next_input == "total = df['price'].sum()"  # the terminal pre-fills it
    ip.rl_next_input = None


def test_a_syntax_error_is_fixed_too_and_own_words_come_first(ip, fake_llm):
    run(ip, "def f(:\n    return 1")
    record = fix.failing_cell()
    assert record is not None and record.error.type == "SyntaxError"
    assert record.error.line == 1
    model = fake_llm.script(text="Missing name.\n\n```python\ndef f():\n    return 1\n```")
    ip.run_cell_magic("llm", f"--fix -m openai:{model} --display none", "It is a tiny function.")
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert sent.startswith("It is a tiny function.\n\n")
    assert "Error: SyntaxError:" in sent and "def f(:" in sent
    ip.rl_next_input = None


def test_nothing_to_fix_is_a_clear_message(ip):
    run(ip, "y = 2")
    with pytest.raises(UsageError, match="Nothing to fix"):
        ip.run_line_magic("llm", "fix")


def test_the_diff_marks_added_and_removed_lines_escaped():
    lines = fix.diff_lines("a = 1\nb = <x>\n", "a = 1\nb = 2")
    bundle = fix.diff_bundle(lines)
    assert "-b = <x>" in bundle["text/plain"] and "+b = 2" in bundle["text/plain"]
    html = bundle["text/html"]
    assert '<span class="nbstream-diff-del">-b = &lt;x&gt;</span>' in html
    assert '<span class="nbstream-diff-add">+b = 2</span>' in html


def test_the_corrected_code_is_the_last_python_block():
    answer = "Before:\n```python\nold()\n```\nAfter:\n```python\nnew()\n```"
    assert fix.corrected_code(answer) == "new()"
    assert fix.corrected_code("no code") == ""


def test_cells_sends_recent_sources_and_outputs_newest_last(ip, fake_llm):
    run(ip, "print('first output')")
    run(ip, "a = 41 + 1\na")
    run(ip, "1 / 0")
    model = fake_llm.script(tokens=["ok"])
    ip.run_cell_magic("llm", f"--cells 3 -m openai:{model} --display none", "What happened?")
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert sent.startswith("The last 3 executed cells of the notebook (oldest first):")
    assert sent.index("print('first output')") < sent.index("a = 41 + 1") < sent.index("1 / 0")
    assert "first output" in sent.split("a = 41 + 1")[0]
    assert "Output:\n```\n42\n```" in sent
    assert "Error: ZeroDivisionError: division by zero" in sent
    assert sent.endswith("What happened?")


def test_cells_leaves_older_cells_out_of_the_budget_and_says_so(ip, fake_llm):
    for i in range(6):
        run(ip, f"v{i} = '{'x' * 300}'")
    model = fake_llm.script(tokens=["ok"])
    ip.run_cell_magic(
        "llm", f"--cells 6 --context-budget 400 -m openai:{model} --display none", "Q"
    )
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert "older cells left out: budget)" in sent
    assert "v5 = " in sent and "v0 = " not in sent


def test_last_figure_is_the_last_displayed_image(ip, fake_llm):
    pytest.importorskip("PIL")
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(buffer, "PNG")
    ip.user_ns["png"] = buffer.getvalue()
    run(ip, "from IPython.display import Image, display\ndisplay(Image(data=png))")
    model = fake_llm.script(tokens=["ok"])
    ip.run_cell_magic("llm", f"-m openai:{model} --display none -o r", "What is {last_figure}?")
    content = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "text"]
    assert ip.user_ns["r"].prompt.startswith("What is [image: last_figure: PNG 30×20")


def test_no_figure_yet_is_a_clear_message(ip):
    with pytest.raises(UsageError, match="no cell of this kernel has displayed an image"):
        ip.run_cell_magic("llm", "-m local --display none", "What is {last_figure}?")


def test_in_out_and_underscore_are_looked_up(ip, fake_llm):
    run(ip, "6 * 7")
    count = ip.execution_count - 1
    model = fake_llm.script(tokens=["ok"])
    ip.run_cell_magic(
        "llm", f"-m openai:{model} --display none", f"{{In[{count}]}} gave {{Out[{count}]}} ({{_}})"
    )
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert sent == "6 * 7 gave 42 (42)"


@pytest.mark.kernel
def test_fix_in_a_kernel_shows_a_diff_and_a_new_cell(llm_kernel, fake_llm):
    kernel = llm_kernel
    kernel.run_ok("df = {'price': [1.5, 2.0]}")  # plain Python: the 6.29 kernel has no pandas
    failed = kernel.run("total = sum(df['prices'])")
    assert failed.reply["content"]["status"] == "error"
    model = fake_llm.script(text=FIXED_PLAIN, token_size=7)
    execution = kernel.run_ok(f"%llm fix -m openai:{model}", 30)
    payload = execution.reply["content"]["payload"]
    assert payload == [
        {"source": "set_next_input", "text": "total = sum(df['price'])", "replace": False}
    ]
    htmls = [o["data"].get("text/html", "") for o in kernel.outputs(execution) if "data" in o]
    diff = next(h for h in htmls if "nbstream-diff" in h)
    assert "-total = sum(df[&#x27;prices&#x27;])" in diff
    assert "+total = sum(df[&#x27;price&#x27;])" in diff
    assert "new cell below" in execution.stdout()
    sent = fake_llm.log(model)[0]["body"]["messages"][-1]["content"]
    assert "KeyError" in sent and "Failing line 1" in sent
