"""The kernel path (:mod:`nbstream.notebook.transform`): which cells are rewritten into an awaited
call, and cells wrapped by other magics, in a real kernel against the fake server."""

from __future__ import annotations

import pytest

from fake_llm_fixture import interrupt_mid_answer
from nbstream.notebook import transform

WRAPPERS = ["%%time", "%%capture captured", "%%timeit -n1 -r1"]


def test_rewrite_keeps_the_option_line_and_body_verbatim():
    lines = ['%%llm -s "Be brief." -o x\n', "Say {hi} and '''quote'''\n"]
    (rewritten,) = transform.rewrite_llm_cell(lines)
    assert rewritten.startswith(f"await {transform.RUNNER}(")
    namespace: dict = {}
    exec(  # the call's arguments are plain literals: evaluate them without running it
        f"args = {rewritten.removeprefix(f'await {transform.RUNNER}').strip()}", namespace
    )
    assert namespace["args"] == ('-s "Be brief." -o x', "Say {hi} and '''quote'''\n")


def test_llm_fix_on_a_cell_of_its_own_is_awaited_too():
    (rewritten,) = transform.rewrite_llm_cell(["%llm fix -m openai:x --max-tokens 9\n"])
    assert rewritten == f"await {transform.RUNNER}('--fix -m openai:x --max-tokens 9', '')\n"
    (bare,) = transform.rewrite_llm_cell(["%llm fix"])
    assert bare == f"await {transform.RUNNER}('--fix', '')\n"
    other = ["%llm fix\n", "x = 1\n"]  # more than the line magic: left as it is
    assert transform.rewrite_llm_cell(other) == other
    assert transform.rewrite_llm_cell(["%llm history\n"]) == ["%llm history\n"]


@pytest.mark.kernel
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_cells_wrapped_by_other_magics_run_and_bind(llm_kernel, fake_llm, wrapper):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["wrapped ", "answer"], delay=0.02)
    execution = kernel.run(f"{wrapper}\n%%llm -m openai:{model} -o ans\nhello", 30)
    assert execution.status == "ok", execution.error()
    assert "SyntaxError" not in execution.stderr() + execution.stdout()
    out = kernel.run_ok("print(repr(str(ans)), ans.finish_reason); del ans").stdout()
    assert out.split() == ["'wrapped", "answer'", "stop"]
    if wrapper == "%%time":
        assert "Wall time" in execution.stdout()
    if wrapper.startswith("%%capture"):  # captured: the answer is in the capture object
        shown = kernel.run_ok("print(len(captured.outputs))").stdout()
        assert int(shown) >= 1


@pytest.mark.kernel
def test_interrupt_stops_a_wrapped_cell_and_keeps_the_partial(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=[f"w{i} " for i in range(400)], delay=0.02)
    execution = kernel.submit(f"%%time\n%%llm -m openai:{model} -o ans\nCount.")
    record = interrupt_mid_answer(kernel, fake_llm, model, execution)
    ipython = int(kernel.run_ok("import IPython; print(IPython.version_info[0])").stdout())
    if ipython >= 9:
        assert execution.status == "error" and execution.error()["ename"] == "KeyboardInterrupt"
    else:  # IPython 8's %%time catches every exception: it shows the traceback and returns
        assert execution.status == "ok"
        assert (execution.error() or {}).get("ename") == "KeyboardInterrupt"  # shown
    assert not record["completed"]
    out = kernel.run_ok("print(ans.finish_reason, ans.chunks > 0, ans is _llm)").stdout()
    assert out.split() == ["cancelled", "True", "True"]


@pytest.mark.kernel
def test_autoawait_off_runs_blocking(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(tokens=["no ", "await"])
    kernel.run_ok("%autoawait off")
    try:
        execution = kernel.run(f"%%llm -m openai:{model} -o ans\nhello", 30)
        assert execution.status == "ok", execution.error()
        out = kernel.run_ok("print(repr(str(ans)))").stdout().strip()
        assert out == "'no await'"
    finally:
        kernel.run_ok("%autoawait on")


@pytest.mark.kernel
def test_a_wrapped_cell_hides_the_stop_button(llm_kernel, fake_llm):
    """Under %%time the cell does not await: a click could not be heard, so the view says
    so instead of offering a button that does nothing."""
    kernel = llm_kernel
    model = fake_llm.script(tokens=["x"])
    before = len(kernel.comm_opens())
    kernel.run_ok(f"%%time\n%%llm -m openai:{model}\nhello", 30)
    state = kernel.comm_opens()[before]["content"]["data"]["state"]
    assert state["stoppable"] is False
    model = fake_llm.script(tokens=["y"])
    kernel.run_ok(f"%%llm -m openai:{model}\nhello", 30)
    assert kernel.comm_opens()[-1]["content"]["data"]["state"]["stoppable"] is True
