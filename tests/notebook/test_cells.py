"""An answer's code into the notebook (:mod:`nbstream.cells`)."""

from __future__ import annotations

import pytest

from nbstream import Response
from nbstream.render.markdown import python_code

ANSWER = """Here you go:

```python
import pandas as pd
df = pd.DataFrame({"a": [1, 2]})
```

Run it in a shell:

```bash
pip install pandas
```

```py
print(df)
```
"""


def test_python_blocks_are_joined_and_others_left_out():
    assert python_code(ANSWER) == (
        'import pandas as pd\ndf = pd.DataFrame({"a": [1, 2]})\n\nprint(df)'
    )
    r = Response(ANSWER)
    assert [lang for lang, _ in r.code_blocks] == ["python", "bash", "py"]
    assert r.python_code() == python_code(ANSWER)


def test_unlabelled_blocks_count_only_when_no_block_says_python():
    assert python_code("```\nx = 1\n```\n") == "x = 1"
    assert python_code("```\nls\n```\n\n```python\ny = 2\n```\n") == "y = 2"
    assert python_code("no code at all") == ""


@pytest.mark.kernel
def test_to_cell_asks_the_front_end_for_a_new_cell(llm_kernel, fake_llm):
    kernel = llm_kernel
    model = fake_llm.script(text=ANSWER, token_size=9)
    execution = kernel.run_ok(f"%%llm -m openai:{model} --to-cell\nWrite pandas code.", 30)
    payload = execution.reply["content"]["payload"]
    assert payload == [{"source": "set_next_input", "text": python_code(ANSWER), "replace": False}]
    assert "go into a new cell below" in execution.stdout()
    again = kernel.run_ok("%llm to-cell")  # the last answer, from a line magic
    assert again.reply["content"]["payload"][0]["text"] == python_code(ANSWER)
