from pathlib import Path

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
