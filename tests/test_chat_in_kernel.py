"""Conversations (``--chat``, issue 11) in a real kernel, against the fake server.

Cells are sent with JupyterLab's ``cellId`` in the request metadata, as a notebook sends
them, so re-running a cell is recognised; the assertions are on the exact messages the
server received, through the real SDKs, for both wire formats.
"""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.kernel

PROVIDERS = ["openai", "anthropic"]


def run_cell(kernel, code: str, cell_id: str | None):
    metadata = None if cell_id is None else {"cellId": cell_id}
    execution = kernel.wait(kernel.submit(code, metadata=metadata), 30)
    assert execution.status == "ok", (execution.error(), execution.stderr())
    return execution


def sent(fake_llm, model: str) -> tuple[str | None, list[dict]]:
    """(system prompt, messages) of the last request, the same for both wire formats."""
    body = fake_llm.log(model)[-1]["body"]
    messages = list(body["messages"])
    system = body.get("system")
    if messages and messages[0]["role"] == "system":
        system = messages.pop(0)["content"]
    return system, messages


def pairs(*items: str) -> list[dict]:
    roles = ["user", "assistant"] * len(items)
    return [{"role": r, "content": c} for r, c in zip(roles, items, strict=False)]


def note_of(kernel) -> str:
    """The status note of the last live view (its ``note`` trait when it opened)."""
    return kernel.comm_opens()[-1]["content"]["data"]["state"]["note"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_three_turns_rerun_of_the_middle_cell_and_reset(llm_kernel, fake_llm, provider):
    kernel = llm_kernel
    name = f"t{uuid.uuid4().hex[:6]}"
    model = fake_llm.script(texts=["Answer A.", "Answer B.", "Answer C.", "Answer B2.", "Fresh."])
    cell = f"%%llm -m {provider}:{model} --chat {name} -s 'Be brief.' -o ans\n"

    run_cell(kernel, cell + "Question A", "cell-A")
    assert sent(fake_llm, model) == ("Be brief.", pairs("Question A"))
    run_cell(kernel, cell + "Question B", "cell-B")
    assert sent(fake_llm, model) == ("Be brief.", pairs("Question A", "Answer A.", "Question B"))
    assert note_of(kernel).startswith("chat " + repr(name) + ": 1 earlier turn sent (~")
    run_cell(kernel, cell + "Question C", "cell-C")
    assert sent(fake_llm, model)[1] == pairs(
        "Question A", "Answer A.", "Question B", "Answer B.", "Question C"
    )

    # Re-run the middle cell, edited: it sees only the turns before it, and replaces its own.
    run_cell(kernel, cell + "Question B, edited", "cell-B")
    assert sent(fake_llm, model) == (
        "Be brief.",
        pairs("Question A", "Answer A.", "Question B, edited"),
    )
    table = kernel.run_ok(f"%llm thread {name}").stdout()
    assert f"Thread {name!r}: 3 turns, 1 stale" in table
    rows = [line for line in table.splitlines() if line[:1].isdigit()]
    assert [row.split()[1] for row in rows] == ["cell-A", "cell-B", "cell-C"]
    assert "stale" in rows[2] and "stale" not in rows[1]
    assert "Next prompt sends: 2 earlier turns sent" in table  # C is stale: not sent
    messages = json.loads(
        kernel.run_ok(
            f"import nbstream, json\nprint(json.dumps(nbstream.thread({name!r})))"
        ).stdout()
    )
    system = {"role": "system", "content": "Be brief."}
    assert messages == [
        system,
        *pairs("Question A", "Answer A.", "Question B, edited", "Answer B2."),
    ]

    # Reset: the next cell starts a new conversation.
    assert kernel.run_ok(f"%llm reset {name}").stdout().strip() == f"Thread {name!r} cleared."
    run_cell(kernel, cell + "Question D", "cell-D")
    assert sent(fake_llm, model) == ("Be brief.", pairs("Question D"))
    assert kernel.run_ok(f"%llm thread {name}").stdout().startswith(f"Thread {name!r}: 1 turn")


def test_a_small_budget_keeps_the_newest_turns(llm_kernel, fake_llm):
    kernel = llm_kernel
    name = f"b{uuid.uuid4().hex[:6]}"
    model = fake_llm.script(texts=[f"Answer number {i} " + "x" * 60 for i in range(5)])
    for i in range(4):
        run_cell(
            kernel,
            f"%%llm -m openai:{model} --chat {name} --chat-budget 80\nQuestion {i}",
            f"budget-{i}",
        )
    # a turn is ~30 estimated tokens, the prompt ~7: with 80 for everything, two turns fit
    _system, messages = sent(fake_llm, model)
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "Question 1",
        "Question 2",
        "Question 3",
    ]
    assert ", 1 dropped by the budget" in note_of(kernel)
    assert note_of(kernel).startswith(f"chat {name!r}: 2 earlier turns sent")


def test_without_a_cell_id_turns_are_appended_and_the_status_says_so(llm_kernel, fake_llm):
    kernel = llm_kernel
    name = f"n{uuid.uuid4().hex[:6]}"
    model = fake_llm.script(texts=["one", "two"])
    cell = f"%%llm -m anthropic:{model} --chat {name}\nSame question"
    run_cell(kernel, cell, None)
    assert note_of(kernel) == f"chat {name!r}: no earlier turns; appending: no cell id"
    run_cell(kernel, cell, None)  # the same cell again, but nothing says it is the same
    assert sent(fake_llm, model)[1] == pairs("Same question", "one", "Same question")
    assert "appending: no cell id" in note_of(kernel)
    assert f"Thread {name!r}: 2 turns" in kernel.run_ok(f"%llm thread {name}").stdout()


def test_ask_in_a_loop_gives_each_call_its_turn_and_a_rerun_replaces_them(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(texts=["a1", "a2", "b1", "b2"])
    code = (
        "import nbstream\n"
        "for q in ['first', 'second']:\n"
        f"    await nbstream.ask(q, model='openai:{model}', chat='loop', display='none')\n"
    )
    run_cell(kernel, "%llm reset loop", None)
    run_cell(kernel, code, "loop-cell")
    assert sent(fake_llm, model)[1] == pairs("first", "a1", "second")
    run_cell(kernel, code, "loop-cell")  # re-run: replaces both turns, in order
    assert sent(fake_llm, model)[1] == pairs("first", "b1", "second")
    messages = json.loads(
        kernel.run_ok("import json\nprint(json.dumps(nbstream.thread('loop')))").stdout()
    )
    assert messages == pairs("first", "b1", "second", "b2")


def test_chat_option_errors_and_line_commands(llm_kernel, fake_llm):
    kernel = llm_kernel
    execution = kernel.run("%%llm --chat-budget -5\nhi")
    assert execution.status == "error"
    assert "--chat-budget: input should be greater than or equal to 0" in execution.stderr()
    assert kernel.run_ok("%llm thread never-used").stdout().strip() == (
        "Thread 'never-used': empty."
    )
    execution = kernel.run("%llm thread a b")
    assert execution.status == "error" and "takes one thread name" in execution.stderr()


def test_a_cell_rerun_without_chat_leaves_its_thread(llm_kernel, fake_llm):
    kernel = llm_kernel
    name = f"t{uuid.uuid4().hex[:6]}"
    model = fake_llm.script(texts=["Answer A.", "Answer B.", "Plain.", "Answer C."])
    chat = f"%%llm -m openai:{model} --chat {name}\n"
    run_cell(kernel, chat + "Question A", "leave-A")
    run_cell(kernel, chat + "Question B", "leave-B")
    run_cell(kernel, f"%%llm -m openai:{model}\nQuestion B, no thread now", "leave-B")
    assert sent(fake_llm, model)[1] == pairs("Question B, no thread now")
    run_cell(kernel, chat + "Question C", "leave-C")
    # B's old turn is not sent with every later turn any more
    assert sent(fake_llm, model)[1] == pairs("Question A", "Answer A.", "Question C")
    table = kernel.run_ok(f"%llm thread {name}").stdout()
    rows = [line for line in table.splitlines() if line[:1].isdigit()]
    assert [row.split()[1] for row in rows] == ["leave-A", "leave-C"]


def test_a_background_chat_answer_takes_the_place_of_its_cell(llm_kernel, fake_llm):
    kernel = llm_kernel
    name = f"t{uuid.uuid4().hex[:6]}"
    fast = fake_llm.script(texts=["Answer A.", "Answer C.", "Answer D."])
    slow = fake_llm.script(tokens=["Slow ", "answer ", "B."], delay=0.5)
    run_cell(kernel, f"%%llm -m openai:{fast} --chat {name}\nQuestion A", "bg-A")
    run_cell(kernel, f"%%llm -m openai:{slow} --chat {name} --bg -o b\nQuestion B", "bg-B")
    run_cell(kernel, f"%%llm -m openai:{fast} --chat {name}\nQuestion C", "bg-C")
    # B was still streaming: C saw A only
    assert sent(fake_llm, fast)[1] == pairs("Question A", "Answer A.", "Question C")
    kernel.run_ok("await b", timeout=30)
    table = kernel.run_ok(f"%llm thread {name}").stdout()
    rows = [line for line in table.splitlines() if line[:1].isdigit()]
    assert [row.split()[1] for row in rows] == ["bg-A", "bg-B", "bg-C"]  # B where its cell is
    run_cell(kernel, f"%%llm -m openai:{fast} --chat {name}\nQuestion D", "bg-D")
    assert sent(fake_llm, fast)[1] == pairs(
        "Question A",
        "Answer A.",
        "Question B",
        "Slow answer B.",
        "Question C",
        "Answer C.",
        "Question D",
    )


def test_thread_names_with_spaces_reset_all_and_unknown_flags(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(texts=["one", "two"])
    run_cell(kernel, f'%%llm -m openai:{model} --chat "data cleaning"\nhi', "spaces-1")
    run_cell(kernel, f"%%llm -m openai:{model} --chat other\nhello", "spaces-2")
    shown = kernel.run_ok('%llm thread "data cleaning"').stdout()
    assert shown.startswith("Thread 'data cleaning': 1 turn")
    cleared = kernel.run_ok("%llm reset 'data cleaning'").stdout().strip()
    assert cleared == "Thread 'data cleaning' cleared."
    assert kernel.run_ok('%llm thread "data cleaning"').stdout().strip().endswith("empty.")
    execution = kernel.run("%llm reset --everything")
    assert execution.status == "error" and "unknown flag '--everything'" in execution.stderr()
    assert kernel.run_ok("%llm thread other").stdout().startswith("Thread 'other': 1 turn")
    out = kernel.run_ok("%llm reset --all").stdout().strip()
    assert out.startswith("All threads cleared") and "'other'" in out
    assert kernel.run_ok("%llm thread other").stdout().strip() == "Thread 'other': empty."


def test_status_notes_stay_in_the_saved_footer(llm_kernel, fake_llm):
    kernel = llm_kernel
    name = f"t{uuid.uuid4().hex[:6]}"
    model = fake_llm.script(texts=["One.", "Two."])
    run_cell(kernel, f"%%llm -m openai:{model} --chat {name}\nFirst", "foot-1")
    execution = run_cell(kernel, f"%%llm -m openai:{model} --chat {name}\nSecond", "foot-2")
    saved = kernel.outputs(execution)[0]["data"]["text/html"]
    footer = saved[saved.index('class="nbstream-footer"') :]
    assert f"chat &#x27;{name}&#x27;: 1 earlier turn sent" in footer and "finished" in footer
