"""Structured answers (``%%llm --schema``, issue 11) in a real kernel: the live view grows
as a table while the JSON streams, Stop keeps the partial text, a re-ask continues the same
view, and the saved output shows the validated object."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.kernel

DEFINE = """
from pydantic import BaseModel

class City(BaseModel):
    name: str
    population: int
"""


def cities_json(n: int) -> str:
    items = [{"name": f"City {i}", "population": 1000 * i} for i in range(n)]
    return json.dumps({"items": items})


def start_cell(kernel, code: str):
    before = len(kernel.comm_opens())
    execution = kernel.submit(code)
    kernel.wait_until(lambda: len(kernel.comm_opens()) > before, 30, "the live widget")
    return execution, kernel.comm_opens()[-1]["content"]["comm_id"]


def browser_tails(kernel, comm_id: str) -> list[str]:
    """What the view shows (frozen + tail) after each content message, replayed as
    view.js does (the text here is ASCII: UTF-16 offsets are string offsets)."""
    frozen = tail = ""
    shown = []
    for msg in kernel.custom_messages(comm_id):
        if msg["type"] == "reset":
            frozen, tail = msg["frozen"], msg["tail"]
        elif msg["type"] == "update":
            buf = tail[: msg["keep"]] + msg["add"]
            cut = msg.get("freeze", 0)
            frozen, tail = frozen + buf[:cut], buf[cut:]
        else:
            continue
        shown.append(frozen + tail)
    return shown


def rows(html: str) -> int:
    return len(re.findall(r"<tr><td>", html))


def trait_updates(kernel, comm_id: str, name: str) -> list[str]:
    return [
        m["content"]["data"]["state"][name]
        for m in kernel.iopub
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == comm_id
        and m["content"]["data"].get("method") == "update"
        and name in m["content"]["data"].get("state", {})
    ]


@pytest.fixture(scope="module")
def kernel(llm_kernel):
    llm_kernel.run_ok(DEFINE)
    return llm_kernel


def test_records_grow_as_table_rows_and_the_saved_output_keeps_the_table(kernel, fake_llm):
    text = cities_json(12)
    model = fake_llm.script(text=text, token_size=5, delay=0.015)
    execution, comm_id = start_cell(
        kernel, f"%%llm -m openai:{model} --schema list[City] -o ans\nTwelve cities."
    )
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    shown = browser_tails(kernel, comm_id)
    counts = [rows(html) for html in shown]
    assert counts == sorted(counts) and counts[-1] == 12
    assert len(set(counts)) >= 6, counts  # it grew row by row, not all at the end
    # only the changed end travels: each update keeps every row but the last one shown
    # (the open record) once the columns are known; nothing is re-sent
    updates = [m for m in kernel.custom_messages(comm_id) if m["type"] in ("update", "reset")]
    for before, msg in zip(shown, updates[1:], strict=False):
        if msg["type"] == "update" and "<th>population</th>" in before:
            assert msg["keep"] >= before.rfind("<tr><td>"), (before, msg)
    [output] = kernel.outputs(execution)
    data = output["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data
    # the JSON of the type asked for (list[City]), not the provider's {"items": ...} wrapper
    assert json.loads(data["text/plain"]) == json.loads(text)["items"]
    html = data["text/html"]
    assert '<table class="nbstream-records">' in html and rows(html) == 12
    assert "<th>name</th><th>population</th>" in html and "<td>City 11</td><td>11000</td>" in html
    assert 'data-finish-reason="stop"' in html
    check = kernel.run_ok(
        "print(type(ans.data[0]).__name__, len(ans.data), ans.data[3].population, ans == _llm)"
    )
    assert check.stdout().split() == ["City", "12", "3000", "True"]
    pandas = kernel.run_ok(
        "import importlib.util\n"
        "if importlib.util.find_spec('pandas'):\n"
        "    print(ans.to_pandas().shape)\n"
        "else:\n"
        "    print('(12, 2)')"
    )
    assert pandas.stdout().strip() == "(12, 2)"


def test_stop_mid_object_keeps_the_partial_text(kernel, fake_llm):
    text = cities_json(40)
    model = fake_llm.script(text=text, token_size=4, delay=0.02)
    execution, comm_id = start_cell(
        kernel, f"%%llm -m anthropic:{model} --schema list[City] -o ans\nForty cities."
    )
    kernel.wait_until(
        lambda: any(rows(h) >= 3 for h in browser_tails(kernel, comm_id)), 30, "three rows"
    )
    kernel.send_custom(comm_id, {"event": "stop"})
    record = fake_llm.wait_for_disconnect(model, timeout=10)
    kernel.wait(execution, 30)
    assert execution.status == "ok" and not record["completed"]
    out = kernel.run_ok(
        f"print(ans.finish_reason, ans.data is None, {text!r}.startswith(ans), len(ans) > 30)"
    )
    assert out.stdout().split() == ["cancelled", "True", "True", "True"]
    [output] = kernel.outputs(execution)
    html = output["data"]["text/html"]
    assert rows(html) >= 3 and 'data-finish-reason="cancelled"' in html  # the partial table
    assert output["data"]["text/plain"].endswith("[nbstream: stopped — partial answer]")
    body = fake_llm.log(model)[-1]["body"]
    assert body["tool_choice"]["type"] == "tool" and body["tools"][0]["name"] == "list_City"


def test_an_invalid_answer_is_asked_again_in_the_same_view(kernel, fake_llm):
    bad = '{"items": [{"name": "Oslo", "population": "many"}]}'
    good = '{"items": [{"name": "Oslo", "population": 700000}]}'
    model = fake_llm.script(texts=[bad, good], token_size=6, delay=0.01)
    execution, comm_id = start_cell(
        kernel, f"%%llm -m openai:{model} --schema list[City] -o ans\nOne city."
    )
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    assert len(fake_llm.log(model)) == 2
    displays = [m for m in execution.messages if m["msg_type"] == "display_data"]
    assert len(displays) == 1  # one view: the re-ask continued it
    notes = trait_updates(kernel, comm_id, "note")
    assert "the JSON does not match — asking again (1/1)" in notes
    resets = [m for m in kernel.custom_messages(comm_id) if m["type"] == "reset"]
    assert resets and resets[-1]["state"] == "waiting" and "Oslo" not in resets[-1]["tail"]
    [output] = kernel.outputs(execution)
    assert json.loads(output["data"]["text/plain"]) == json.loads(good)["items"]  # the type's JSON
    assert "<td>700000</td>" in output["data"]["text/html"]
    assert kernel.run_ok("print(ans.data)").stdout().strip() == (
        "[City(name='Oslo', population=700000)]"
    )


def test_an_answer_that_never_validates_fails_naming_the_field(kernel, fake_llm):
    bad = '{"items": [{"name": "Oslo", "population": "many"}]}'
    model = fake_llm.script(texts=[bad])
    execution = kernel.run(f"%%llm -m anthropic:{model} --schema list[City] -o ans\nOne city.")
    assert execution.status == "ok", execution.error()
    [output] = kernel.outputs(execution)
    assert 'data-finish-reason="error"' in output["data"]["text/html"]
    assert "<td>many</td>" in output["data"]["text/html"]  # what was received, as a table
    plain = output["data"]["text/plain"]
    assert plain.startswith(bad) and "[nbstream: failed: the answer does not match" in plain
    out = kernel.run_ok("print(ans.finish_reason, ans.data); print(ans.error)").stdout()
    first, error = out.splitlines()
    assert first == "error None" and "[0].population: Input should be a valid integer" in error
    assert len(fake_llm.log(model)) == 2  # the default: one re-ask


def test_server_without_response_format_says_so_in_the_status(kernel, fake_llm):
    model = fake_llm.script(
        text='{"name": "Oslo", "population": 7}', reject_fields=["response_format"], delay=0.01
    )
    execution, comm_id = start_cell(
        kernel, f"%%llm -m openai:{model} --schema City -o ans\nOne city."
    )
    kernel.wait(execution, 30)
    assert execution.status == "ok", execution.error()
    notes = trait_updates(kernel, comm_id, "note")
    assert "schema by instructions: the server has no response_format" in notes
    assert [r["status"] for r in fake_llm.log(model)] == [400, 200]
    assert kernel.run_ok("print(ans.data)").stdout().strip() == "name='Oslo' population=7"
    html = kernel.outputs(execution)[0]["data"]["text/html"]
    assert '<table class="nbstream-record">' in html and "<th>population</th><td>7</td>" in html


def test_live_html_shows_the_table_too(kernel, fake_llm):
    model = fake_llm.script(text=cities_json(8), token_size=5, delay=0.03)
    execution = kernel.run_ok(
        f"%%llm -m openai:{model} --schema list[City] --display html -o ans\nEight cities.", 30
    )
    live = [
        m["content"]["data"]["text/html"]
        for m in execution.messages
        if m["msg_type"] == "update_display_data"
    ][:-1]
    assert any(0 < rows(h) < 8 for h in live), [rows(h) for h in live]
    assert rows(kernel.outputs(execution)[0]["data"]["text/html"]) == 8


def test_a_bad_schema_is_a_usage_error_and_nothing_is_sent(kernel, fake_llm):
    model = fake_llm.script(text="{}")
    execution = kernel.run(f"%%llm -m openai:{model} --schema list[Nowhere]\nhi")
    assert execution.status == "error"
    assert "UsageError: --schema: unknown name 'Nowhere'" in execution.stderr()
    assert "Traceback" not in execution.stderr()
    execution = kernel.run(f"%%llm -m openai:{model} --schema 'City.__class__'\nhi")
    assert "not allowed in a schema expression: the private attribute" in execution.stderr()
    assert fake_llm.log(model) == []
