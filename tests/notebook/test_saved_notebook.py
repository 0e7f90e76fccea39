"""A notebook executed headless (nbclient, as nbval does) keeps the answer where every viewer
looks: nbconvert's HTML and Markdown exports show it without any widget state."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter, MarkdownExporter

pytestmark = pytest.mark.kernel


def test_nbconvert_shows_the_answer_without_widget_state(fake_llm, tmp_path):
    model = fake_llm.script(
        tokens=["## Findings\n\n", "The **median** ", "is 42.\n\n", "<script>alert(1)</script>"],
        delay=0.01,
    )
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext nbstream"),
            nbformat.v4.new_code_cell(
                f"%%llm -m openai:{model} --base-url {fake_llm.openai_base_url} -o ans\nSummarise."
            ),
            nbformat.v4.new_code_cell("print(ans.finish_reason)"),
        ]
    )
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in outputs[0].data
    assert nb.cells[2].outputs[0].text == "stop\n"

    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "<h2>Findings</h2>" in html and "<strong>median</strong> is 42." in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    markdown, _ = MarkdownExporter().from_notebook_node(nb)
    # nbconvert's Markdown keeps the HTML bundle (text/html wins over text/plain)
    assert "<strong>median</strong> is 42." in markdown and "<h2>Findings</h2>" in markdown


def test_the_saved_output_says_where_the_answer_came_from(fake_llm, tmp_path, monkeypatch):
    """Provenance: the final output's metadata names the model, options, ending, usage, cost,
    the prompt's hash, nbstream's version and when, and carries no key."""
    import hashlib

    from nbconvert import NotebookExporter

    secret = "sk-test-provenance-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    usage = {"input_tokens": 8, "output_tokens": 2}
    model = fake_llm.script(tokens=["Forty", "-two."], usage=usage)
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                f"%load_ext nbstream\nimport nbstream\n"
                f"nbstream.pricing.set_price('openai:{model}', input=2.0, output=4.0)"
            ),
            nbformat.v4.new_code_cell(
                f"%%llm -m openai:{model} --base-url {fake_llm.openai_base_url} "
                "-s 'Be brief.' -t 0.2 -o ans\nWhat is the answer?"
            ),
        ]
    )
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    saved, _ = NotebookExporter().from_notebook_node(nb)
    assert secret not in saved and secret[:12] not in saved
    (output,) = nbformat.reads(saved, as_version=4).cells[1].outputs  # as saved, read back
    assert output["data"]["text/plain"] == "Forty-two."
    meta = output["metadata"]["nbstream"]
    assert meta["model"] == f"openai:{model}" and meta["finish_reason"] == "stop"
    assert meta["options"] == {
        "system": "Be brief.",
        "temperature": 0.2,
        "base_url": fake_llm.openai_base_url,
    }
    assert meta["usage"] == {"input_tokens": 8, "output_tokens": 2}
    assert meta["cost"] == pytest.approx((8 * 2.0 + 2 * 4.0) / 1e6) and meta["cached"] is False
    assert meta["prompt_sha256"] == hashlib.sha256(b"What is the answer?").hexdigest()
    assert len(meta["request_key"]) == 64 and meta["error"] is None
    assert meta["nbstream_version"] and meta["timestamp"].endswith("+00:00")
    assert "· $0.000024</div>" in output["data"]["text/html"]  # the footer shows the cost
