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
    assert "The **median** is 42." in markdown or "<strong>median</strong>" in markdown
