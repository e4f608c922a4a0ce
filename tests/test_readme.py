from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("```bash\n")[1:]
    return [block.split("```", 1)[0].strip() for block in blocks]


def test_quickstart_has_two_commands_and_ci_runs_the_test_one_verbatim():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "torchwork run" in commands[0] and "pytest" in commands[1]
    for command in commands:
        assert "torch==2.13.0" in command  # never an unpinned torch: that pulls a CUDA build
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci


def python_example(page: str, heading: str) -> str:
    text = (ROOT / page).read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(
    ("page", "heading"),
    [("README.md", "## In Python and notebooks"), ("docs/api.md", "## A whole run")],
)
def test_the_python_example_runs_by_name_with_the_flags_as_keywords(page, heading):
    """Every tw.run(...) of the example takes the flags of `torchwork run` by name, and makes
    a config the command line would accept (nothing is trained here)."""
    import ast

    from torchwork.settings import KEYWORDS, config_from

    calls = [
        node
        for node in ast.walk(ast.parse(python_example(page, heading)))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "run"
    ]
    assert len(calls) >= 2
    assert {"data", "target"} <= {k.arg for k in calls[0].keywords}
    for call in calls:
        settings = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg != "force"}
        assert not call.args and set(settings) <= set(KEYWORDS)
        config_from(**settings)  # a ConfigError for a bad value
