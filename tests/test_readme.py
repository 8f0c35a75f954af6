"""The README's plugin example works as written."""

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_plugin_example_runs(fake_dist, invoke):
    source = re.search(r"```python\n# my_plugin.py\n(.*?)```", README, re.S).group(1)
    entry = re.search(r'\[project.entry-points.regfw\]\n(\S+) = "(\S+)"', README)
    fake_dist("my-plugin", {entry.group(2): source}, {entry.group(1): entry.group(2)})
    listing = invoke("list")
    assert "tanh-net" in listing.stdout and "linear-tanh" in listing.stdout
    for args in (["linear-tanh"], ["linear", "--model", "tanh-net"]):
        result = invoke("run", *args, "--epochs", 5, "--no-track")
        assert result.exit_code == 0, result.stderr


def test_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
