"""The fault suite: what each failure looks like to the user, for both wire formats.

Every case goes through the public API (``nbstream.ask_sync``), the real SDKs and real
HTTP on 127.0.0.1 against the scriptable server, and asserts the text kept, the finish
reason, the message, and (where nbstream gives up) that the connection was closed.
The README's table "fault → what you see → what the variable holds" is this file.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import nbstream
from fake_llm_fixture import GEMINI_KEY, point_sdks_at
from nbstream.engine import EMPTY, TRUNCATED

OPENAI_KEY = "sk-proj-faultsuite-SECRET-0123456789"
ANTHROPIC_KEY = "sk-ant-faultsuite-SECRET-0123456789"
PROVIDERS = ["openai", "anthropic", "gemini", "responses"]
"""``responses``: ``openai:`` through OpenAI's Responses API (``api="responses"``)."""
KEYS = {
    "openai": OPENAI_KEY,
    "responses": OPENAI_KEY,
    "anthropic": ANTHROPIC_KEY,
    "gemini": GEMINI_KEY,
}
URL_VARIABLES = {
    "openai": "OPENAI_BASE_URL",
    "responses": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GOOGLE_GEMINI_BASE_URL",
}
LABELS = {
    "openai": "the server",
    "responses": "the server",
    "anthropic": "Anthropic",
    "gemini": "Gemini",
}
"""How each provider's errors name a server set by a base URL."""


def url_for(provider: str, server: str) -> str:
    """A base URL for ``provider`` at ``server`` (OpenAI's has the ``/v1``)."""
    return server + ("/v1" if provider in ("openai", "responses") else "")


def sampling_of(provider: str, body: dict) -> tuple[object, object, object]:
    """``(top_p, temperature, stop sequences)`` as they went over the wire."""
    if provider == "gemini":
        config = body["generationConfig"]
        return config["topP"], config["temperature"], config["stopSequences"]
    stop = body["stop" if provider == "openai" else "stop_sequences"]
    return body["top_p"], body["temperature"], stop


@pytest.fixture(autouse=True)
def _keys(monkeypatch, fake_llm):
    point_sdks_at(monkeypatch, fake_llm, OPENAI_KEY, ANTHROPIC_KEY)
    for name in ("NBSTREAM_MODEL", "NBSTREAM_HTTP_RETRIES", "NBSTREAM_IDLE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def ask(provider: str, model: str, **options):
    if provider == "responses":
        provider, options = "openai", {"api": "responses", **options}
    return nbstream.ask_sync("Say hello", model=f"{provider}:{model}", display="none", **options)


TOKENS = ["Hello", " there", ", ", "friend", "."]


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_with_retry_after_is_retried_after_that_long(fake_llm, provider):
    model = fake_llm.script(statuses=[429], retry_after="0.4", tokens=TOKENS)
    r = ask(provider, model)
    assert r == "Hello there, friend." and r.finish_reason == "stop"
    first, second = fake_llm.log(model)
    assert [first["attempt"], second["attempt"]] == [1, 2]
    assert second["received_at"] - first["received_at"] >= 0.4


@pytest.mark.parametrize("provider", PROVIDERS)
def test_5xx_then_success_is_retried_with_backoff(fake_llm, provider):
    model = fake_llm.script(statuses=[503, 500], tokens=TOKENS)
    r = ask(provider, model, retry_max_wait=0.2)
    assert r.finish_reason == "stop" and len(fake_llm.log(model)) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retries_run_out_and_the_error_names_the_real_cause(fake_llm, provider):
    model = fake_llm.script(status=503, error_message="try later")
    r = ask(provider, model, http_retries=2, retry_max_wait=0.1)
    assert r == "" and r.finish_reason == "error"
    assert r.error.startswith("HTTP 503 from ") and "try later" in r.error
    assert r.error.endswith("(after 2 retries)") and "idle" not in r.error
    assert len(fake_llm.log(model)) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_beyond_the_cap_is_an_error_not_a_silent_wait(fake_llm, provider):
    model = fake_llm.script(status=429, retry_after="3600", error_message="quota")
    r = ask(provider, model, retry_max_wait=5)
    assert r.finish_reason == "error" and len(fake_llm.log(model)) == 1
    assert "HTTP 429" in r.error and "asked to retry after 3600 s" in r.error
    assert "retry_max_wait=…" in r.error  # ask() names the keyword


@pytest.mark.parametrize("provider", PROVIDERS)
def test_401_is_not_retried(fake_llm, provider):
    model = fake_llm.script(status=401, error_message="bad key")
    r = ask(provider, model)
    assert r.finish_reason == "error" and len(fake_llm.log(model)) == 1


# -- broken streams ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_error_event_mid_stream_keeps_the_text_and_says_what_the_server_said(fake_llm, provider):
    model = fake_llm.script(
        tokens=TOKENS,
        error_event_after=2,
        error_type="overloaded_error",
        error_message="Overloaded",
    )
    r = ask(provider, model)
    assert r == "Hello there" and r.finish_reason == "error"
    assert r.error.startswith(
        f"{LABELS[provider]} reported an error mid-answer: Overloaded"
        if provider not in ("openai", "responses")
        else f"the server at {fake_llm.openai_base_url} reported an error mid-answer"
    )
    assert "HTTP 200" not in r.error
    assert len(fake_llm.log(model)) == 1  # text had arrived: never retried


@pytest.mark.parametrize("provider", PROVIDERS)
def test_invalid_utf8_keeps_the_text_and_says_so(fake_llm, provider):
    model = fake_llm.script(tokens=TOKENS, invalid_utf8_after=3)
    r = ask(provider, model)
    assert r == "Hello there, " and r.finish_reason == "error"
    assert "bytes that are not UTF-8" in r.error and "UnicodeDecodeError" not in r.error


@pytest.mark.parametrize("kind", ["empty", "preamble_only"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_stream_that_ends_before_anything_is_told_apart_from_a_drop(fake_llm, provider, kind):
    model = fake_llm.script(tokens=TOKENS, **{kind: True})
    r = ask(provider, model, http_retries=0)
    assert r == "" and r.finish_reason == "error" and r.error == EMPTY


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_drop_mid_answer_is_a_truncation(fake_llm, provider):
    model = fake_llm.script(tokens=TOKENS, drop_after=2)
    r = ask(provider, model)
    assert r == "Hello there" and r.finish_reason == "error" and r.error == TRUNCATED


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_surrogate_pair_split_across_deltas_is_joined(fake_llm, provider):
    model = fake_llm.script(tokens=["smile ", "\ud83d", "\ude00", " and \udc00 lone"])
    r = ask(provider, model)
    assert r.finish_reason == "stop" and r == "smile \U0001f600 and \ufffd lone"
    r.encode("utf-8")  # the answer can be saved, sent, printed


# -- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_first_token_timeout_names_itself_and_closes_the_connection(fake_llm, provider):
    model = fake_llm.script(tokens=TOKENS, headers_delay=30)
    r = ask(provider, model, first_token_timeout=0.5, http_retries=0)
    assert r == "" and r.finish_reason == "error"
    assert "(first-token timeout)" in r.error and "first_token_timeout=…" in r.error
    assert fake_llm.wait_for_disconnect(model, timeout=5)["client_disconnected"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_idle_timeout_names_itself_keeps_the_text_and_closes(fake_llm, provider):
    model = fake_llm.script(tokens=TOKENS, stall_after=2, stall_seconds=30)
    r = ask(provider, model, idle_timeout=0.5)
    assert r == "Hello there" and r.finish_reason == "error"
    assert "(idle timeout)" in r.error and "idle_timeout=…" in r.error
    record = fake_llm.wait_for_disconnect(model, timeout=5)
    assert record["tokens_sent"] == 2 and not record["completed"]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A 127.0.0.1 port that accepts no connection: its listen backlog is full, so a
    client's SYN is dropped and ``connect()`` hangs (what an unreachable host does)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    port = server.getsockname()[1]
    for _ in range(4):  # fill the accept queue without accepting
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        fillers.append(client)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for client in fillers:
            client.close()
        server.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connect_timeout_names_itself(black_hole, provider, monkeypatch):
    url = url_for(provider, black_hole)
    monkeypatch.setenv(URL_VARIABLES[provider], url)
    r = ask(provider, "m", connect_timeout=0.3, http_retries=0)
    assert r.finish_reason == "error"
    assert "(connect timeout)" in r.error and "connect_timeout=…" in r.error


# -- wording and secrets -------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_truncated_key_echoed_by_the_server_is_masked(fake_llm, provider):
    key = KEYS[provider]
    model = fake_llm.script(status=401, error_message=f"Incorrect API key provided: {key[:15]}…")
    r = ask(provider, model)
    assert key[:15] not in r.error and key[:8] not in r.error and "***" in r.error


@pytest.mark.parametrize("provider", PROVIDERS)
def test_credentials_in_a_base_url_never_show(provider, monkeypatch):
    url = url_for(provider, "http://alice:s3cr3t-pw@127.0.0.1:9")
    r = ask(provider, "m", base_url=url, http_retries=0)
    assert r.finish_reason == "error" and "s3cr3t-pw" not in r.error and "alice" not in r.error
    assert "http://***@127.0.0.1:9" in r.error and "is the server running" in r.error


def test_credentials_in_a_base_url_never_show_in_llm_config(ip, monkeypatch, capsys):
    monkeypatch.setenv("NBSTREAM_BASE_URL", "http://bob:hunter2@proxy.local:8080/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://carol:pa55@gw.local/v1")
    ip.run_line_magic("llm", "config")
    out = capsys.readouterr().out
    assert "hunter2" not in out and "pa55" not in out and "bob" not in out
    assert "http://***@proxy.local:8080/v1" in out and "https://***@gw.local/v1" in out


SECRET_QUERY = (
    "?api-key=QS1-SECRET&key=QS2-SECRET&token=QS3-SECRET&access_token=QS4-SECRET&region=eu"
)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_secret_query_values_in_a_base_url_never_show(provider, monkeypatch):
    """Azure-style ``?api-key=``, ``?key=``, ``?token=``, ``?access_token=`` and any value equal
    to a configured key are masked like ``user:password@``."""
    key = KEYS[provider]
    url = url_for(provider, "http://127.0.0.1:9")
    r = ask(provider, "m", base_url=f"{url}{SECRET_QUERY}&k={key}", http_retries=0)
    assert r.finish_reason == "error" and "SECRET" not in r.error and key not in r.error
    assert "api-key=***" in r.error and "access_token=***" in r.error and "region=eu" in r.error
    assert "SECRET" not in repr(r) and "SECRET" not in str(r.__dict__)


def test_secret_query_values_never_show_in_llm_config_or_the_history(ip, monkeypatch, capsys):
    from nbstream import store
    from nbstream.settings import Settings

    monkeypatch.setenv("NBSTREAM_BASE_URL", f"http://proxy.local:8080/v1{SECRET_QUERY}")
    monkeypatch.setenv("OPENAI_BASE_URL", f"https://gw.local/v1?k={OPENAI_KEY}")
    ip.run_line_magic("llm", "config")
    out = capsys.readouterr().out
    assert "SECRET" not in out and OPENAI_KEY not in out
    assert "?api-key=***&key=***&token=***&access_token=***&region=eu" in out
    assert "https://gw.local/v1?k=***" in out
    options = store.options_of(Settings(base_url=f"http://h/v1{SECRET_QUERY}"))
    assert "SECRET" not in str(options) and "region=eu" in options["base_url"]


def test_401_with_only_an_auth_token_names_that_variable(fake_llm, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "tok-faultsuite-SECRET-987654321")
    model = fake_llm.script(status=401, error_message="invalid bearer token")
    r = ask("anthropic", model)
    assert "check ANTHROPIC_AUTH_TOKEN" in r.error and "ANTHROPIC_API_KEY" not in r.error


@pytest.mark.parametrize("provider", PROVIDERS)
def test_connection_refused_has_a_hint_for_both_providers(provider, monkeypatch):
    url = url_for(provider, "http://127.0.0.1:9")
    monkeypatch.setenv(URL_VARIABLES[provider], url)
    r = ask(provider, "m", http_retries=0)
    label = LABELS[provider]  # a base URL: its server
    assert r.error.startswith(f"Could not reach {label} at {url}")
    assert "is the server running and the URL right?" in r.error


@pytest.mark.parametrize("provider", PROVIDERS)
def test_top_p_and_stop_reach_the_wire(fake_llm, provider):
    model = fake_llm.script(tokens=TOKENS)
    if provider == "responses":  # the Responses API has no stop sequences: refused, unsent
        r = ask(provider, model, top_p=0.5, stop=["END"], temperature=0.3)
        assert r.finish_reason == "error" and "no stop sequences" in r.error
        assert "--api chat" in r.error and fake_llm.log(model) == []
        r = ask(provider, model, top_p=0.5, temperature=0.3)
        body = fake_llm.log(model)[-1]["body"]
        assert (body["top_p"], body["temperature"]) == (0.5, 0.3)
        return
    r = ask(provider, model, top_p=0.5, stop=["END", "STOP"], temperature=0.3)
    assert r.finish_reason == "stop"
    top_p, temperature, stop = sampling_of(provider, fake_llm.log(model)[-1]["body"])
    assert top_p == 0.5 and temperature == 0.3
    assert stop == ["END", "STOP"]
