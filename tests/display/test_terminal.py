"""Terminal IPython in a real pseudo-terminal: tokens print as they arrive, Ctrl-C stops."""

from __future__ import annotations

import sys

import pexpect
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


@pytest.fixture
def ipython(fake_llm, tmp_path):
    env = {
        "OPENAI_API_KEY": "sk-terminal-secret-123456",
        "TERM": "dumb",
        "PATH": "/usr/bin:/bin",
        "IPYTHONDIR": str(tmp_path),
        "HOME": str(tmp_path),
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor"],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(50, 200),
    )
    child.expect(r"In \[1\]: ")
    child.sendline("%load_ext nbstream")
    child.expect(r"In \[2\]: ")
    yield child
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()
    assert not child.isalive()


def test_tokens_print_and_ctrl_c_keeps_the_partial(ipython, fake_llm):
    model = fake_llm.script(tokens=[f"tok{i} " for i in range(300)], delay=0.03)
    ipython.sendline(f"%%llm -m openai:{model} --base-url {fake_llm.openai_base_url} -o part")
    ipython.sendline("Count for me.")
    ipython.sendline("")
    ipython.sendline("")  # a cell magic ends at a blank line; the simple prompt wants two
    ipython.expect("tok5 ")  # streaming, token by token
    ipython.sendintr()  # Ctrl-C
    ipython.expect(r"stopped")
    ipython.expect(r"In \[\d+\]: ")
    assert "Traceback" not in ipython.before
    record = fake_llm.wait_for_disconnect(model, timeout=5)
    assert 5 < record["tokens_sent"] < 300
    ipython.sendline("print(part.finish_reason, part.chunks > 5, part.startswith('tok0 tok1'))")
    ipython.expect(r"cancelled True True")


def test_finished_answer_in_the_terminal(ipython, fake_llm):
    model = fake_llm.script(tokens=["# Hi\n", "plain ", "text"])
    ipython.sendline(f"%%llm -m openai:{model} --base-url {fake_llm.openai_base_url}")
    ipython.sendline("Say hi")
    ipython.sendline("")
    ipython.sendline("")  # a cell magic ends at a blank line; the simple prompt wants two
    ipython.expect("plain text")
    ipython.expect(r"In \[\d+\]: ")
    ipython.sendline("print(repr(_llm.finish_reason), 'sk-terminal' in repr(_llm))")
    ipython.expect(r"'stop' False")


def test_thinking_is_a_dim_line_then_the_answer():
    import asyncio
    import io

    from nbstream.display.terminal import TerminalSink
    from nbstream.engine import Stream
    from nbstream.providers.base import Final, Request, ThinkingDelta

    async def provider(request):
        for piece in ["weigh ", "it"]:
            yield ThinkingDelta(piece)
        yield "Yes."
        yield Final("stop")

    out = io.StringIO()
    response = asyncio.run(
        Stream(provider, Request("p", "m"), model_id="t:m", sink=TerminalSink(out)).run()
    )
    text = out.getvalue()
    assert text.startswith("\x1b[2m[thinking…]\x1b[0m\r\x1b[2m[thought for 0 s, 2 tokens")
    assert text.endswith("]\x1b[0m\nYes.\n")
    assert "weigh" not in text and response.thinking == "weigh it"
