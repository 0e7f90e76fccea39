"""``mode="batch"`` of any size: rows split into provider batches under the service's limits
(scaled down on the test server: 10 rows / 2 KB per batch), one Job, Stop, resume; through
the real SDKs against the local fake server, and across two real kernels."""

from __future__ import annotations

import itertools
import json
import time

import pytest

import nbstream
from fake_llm_fixture import point_sdks_at
from nbstream import batch
from nbstream.batch.parts import split
from nbstream.errors import ProviderError
from nbstream.providers.batches import BatchLimits

PROVIDERS = ["openai", "anthropic"]
ROWS, BYTES = 10, 2048


@pytest.fixture
def sdks(fake_llm, monkeypatch, tmp_path):
    point_sdks_at(monkeypatch, fake_llm, "sk-parts-test-key", "sk-ant-parts-test-key")
    monkeypatch.setenv("NBSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NBSTREAM_DISPLAY", "none")
    monkeypatch.setattr(batch.services, "POLL_FIRST", 0.05)
    monkeypatch.setattr(batch.services, "POLL_MAX", 0.2)
    return fake_llm


def questions(n: int) -> list[str]:
    """Prompts of growing length: some parts are cut by bytes, others by rows."""
    return [f"q{i} " + "x" * (i * 7) for i in range(n)]


def batches_of(server, model: str) -> list[dict]:
    return [b for b in server.batches() if b["rows"] and b["rows"][0]["model"] == model]


# -- splitting --------------------------------------------------------------------------------


def test_split_keeps_every_part_under_both_limits_and_uses_as_few_as_it_can():
    sizes = [100] * 25 + [900, 900, 900] + [50] * 7
    parts = split(sizes, BatchLimits(rows=10, bytes=2048), "OpenAI")
    assert [(p.start, p.stop) for p in parts] == [(0, 10), (10, 20), (20, 26), (26, 32), (32, 35)]
    for part in parts:
        assert len(part) <= 10 and sum(sizes[part.start : part.stop]) <= 2048
    # greedy: merging any part into the next would break a limit
    for a, b in itertools.pairwise(parts):
        rows = b.stop - a.start
        assert rows > 10 or sum(sizes[a.start : b.stop]) > 2048


def test_a_row_bigger_than_a_whole_batch_is_refused_with_its_number():
    with pytest.raises(ValueError, match=r"row 2 .* 3,000 bytes, more than the 2,048"):
        split([10, 10, 3000], BatchLimits(rows=10, bytes=2048), "OpenAI")


def test_batch_limits_above_the_service_s_own_are_refused(sdks):
    with pytest.raises(ValueError, match=r"batch_rows must be an int from 1 to 50,000"):
        nbstream.map_sync(["a"], "{item}", model="openai:x", mode="batch", batch_rows=60_000)
    with pytest.raises(ValueError, match=r"batch_bytes must be an int from 1 to 256,000,000"):
        nbstream.map_sync(["a"], "{item}", model="anthropic:x", mode="batch", batch_bytes=0)


# -- one job over several provider batches -------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rows_are_split_by_count_and_bytes_and_mapped_back_in_order(sdks, provider, tmp_path):
    model = sdks.script(echo=True, batch_seconds=0.002, batch_max_rows=ROWS, batch_max_bytes=BYTES)
    rows = questions(45)
    history = tmp_path / "h.sqlite"
    job = nbstream.map_sync(
        rows, "{item}", model=f"{provider}:{model}", mode="batch", history=str(history),
        batch_rows=ROWS, batch_bytes=BYTES,
    )  # fmt: skip
    assert job.id.startswith(f"{provider}:nbjob_")
    out = job.wait(timeout=60)
    assert [str(r) for r in out] == [f"echo: {q}" for q in rows]  # every row, in order
    assert all(r.finish_reason == "stop" for r in out)
    made = batches_of(sdks, model)
    sizes = [b["total"] for b in made]
    assert sum(sizes) == 45 and max(sizes) <= ROWS
    assert len(made) > 45 / ROWS  # some parts were cut by bytes, not by count
    assert all(b["status"] in ("completed", "ended") for b in made)
    assert job.tally.done == 45 and job.tally.failed == job.tally.cancelled == 0
    # one id collects the whole job (as a new kernel would)
    again = nbstream.collect(job.id, history=str(history)).wait(timeout=60)
    assert [str(r) for r in again] == [str(r) for r in out]
    assert len(batches_of(sdks, model)) == len(made)  # nothing sent again


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_batch_over_the_service_s_limits_is_refused_clearly_without_splitting(sdks, provider):
    """What the split saves users from: the service refuses a batch over its limits."""
    model = sdks.script(echo=True, batch_max_rows=ROWS, batch_max_bytes=BYTES)
    with pytest.raises(ProviderError) as caught:
        nbstream.map_sync(questions(12), "{item}", model=f"{provider}:{model}", mode="batch")
    assert "sk-parts" not in str(caught.value) and "sk-ant-parts" not in str(caught.value)
    assert batches_of(sdks, model) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stop_cancels_every_part_and_keeps_what_finished(sdks, provider):
    model = sdks.script(echo=True, batch_seconds=0.15, batch_max_rows=ROWS)
    job = nbstream.map_sync(
        questions(30), "{item}", model=f"{provider}:{model}", mode="batch", cache="off",
        batch_rows=ROWS,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while len(batches_of(sdks, model)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(batches_of(sdks, model)) == 3
    job.stop()
    out = job.wait(timeout=60)
    made = batches_of(sdks, model)
    assert all(b["stop"] == "cancel" for b in made)  # every part was cancelled upstream
    ran = [b["done"] for b in made]
    assert sum(ran) < 30  # rows not run were dropped
    answered = [r for r in out if r.finish_reason == "stop"]
    assert len(answered) == sum(ran) and all(str(r).startswith("echo: q") for r in answered)
    assert sum(r.finish_reason == "cancelled" for r in out) == 30 - len(answered)
    assert job.tally.cancelled == 30 - len(answered)


def test_stop_before_every_part_is_sent_sends_no_more(sdks):
    model = sdks.script(echo=True, batch_seconds=0.05)
    job = nbstream.map_sync(
        questions(40), "{item}", model=f"openai:{model}", mode="batch", cache="off", batch_rows=2
    )
    job.stop()  # right after the first of 20 parts
    out = job.wait(timeout=60)
    sent = len(batches_of(sdks, model))
    assert sent < 20
    unsent = [r for r in out if r.error and r.error.startswith("not submitted")]
    assert len(unsent) >= 40 - 2 * sent
    assert all(r.finish_reason == "cancelled" for r in unsent)


# -- resume after a kernel restart ---------------------------------------------------------------


def test_a_rerun_after_a_kernel_restart_resumes_the_job_part_by_part(fake_llm, tmp_path):
    """Kernel 1 submits a job of 3 parts and dies; kernel 2 runs the same cell: the same job
    goes on (no part is submitted again) and every row comes back in order."""
    from kernel_harness import KernelSession

    model = fake_llm.script(echo=True, batch_seconds=0.5, batch_max_rows=ROWS)
    env = {
        "OPENAI_API_KEY": "sk-parts-kernel-key-0123456789",
        "OPENAI_BASE_URL": fake_llm.openai_base_url,
        "NBSTREAM_CACHE_DIR": str(tmp_path / "cache"),
        "NBSTREAM_HISTORY": str(tmp_path / "history.sqlite"),
    }
    cell = (
        "import json, nbstream\n"
        "rows = [f'q{i}' for i in range(25)]\n"
        f"job = nbstream.map_sync(rows, '{{item}}', model='openai:{model}', mode='batch', "
        f"batch_rows={ROWS})\n"
    )
    with KernelSession(env=env) as first:
        job_id = json.loads(first.run_ok(cell + "print(json.dumps(job.id))").stdout().split()[-1])
        deadline = time.monotonic() + 20
        while len(batches_of(fake_llm, model)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        done_first = json.loads(  # parts of 10, 10 and 5 rows: the short one ends first
            first.run_ok(
                "import time\nfor _ in range(400):\n"
                "    if any(r is not None for r in job.responses): break\n"
                "    time.sleep(0.02)\n"
                "print(json.dumps([sum(r is not None for r in job.responses), job.done]))"
            )
            .stdout()
            .split("\n")[-2]
        )
        assert done_first == [5, False]  # part 3 collected (and recorded), 1 and 2 not
    assert len(batches_of(fake_llm, model)) == 3
    with KernelSession(env=env) as second:  # the restarted kernel runs the same cell
        out = json.loads(
            second.run_ok(
                cell + "res = job.wait(60)\n"
                "print(json.dumps([job.id, [str(r) for r in res], sum(r.cached for r in res)]))",
                timeout=90,
            )
            .stdout()
            .splitlines()[-1]
        )
    assert out[0] == job_id
    assert out[1] == [f"echo: q{i}" for i in range(25)]
    assert out[2] == 5  # the collected part came from the pack, not the service
    assert len(batches_of(fake_llm, model)) == 3  # nothing was submitted twice
