"""Debugging a plugin: `regfw plugins --json` for scripts, REGFW_TRACE_PLUGINS=1 for hook calls."""

from __future__ import annotations

import json

GOOD = """
from regfw import hookimpl

@hookimpl
def register_losses(register):
    register("acme-l1", lambda: __import__("torch").nn.L1Loss(), description="L1")
    register("acme-l2", lambda: __import__("torch").nn.MSELoss(), description="L2")
"""

RAISES = """
from regfw import hookimpl

@hookimpl
def register_models(register):
    raise RuntimeError("model zoo offline")
"""


def test_plugins_json_describes_every_plugin(fake_dist, invoke):
    fake_dist("acme", {"acme_good": GOOD}, {"acme": "acme_good"}, version="2.0")
    fake_dist("acme-broken", {"acme_broken": "import not_a_module_anywhere"}, {"acme-broken": "acme_broken"})
    result = invoke("plugins", "--json", env={"REGFW_DISABLE_PLUGINS": "mnist"})
    assert result.exit_code == 0
    plugins = json.loads(result.stdout)
    by_name = {p["name"]: p for p in plugins}
    assert [p["name"] for p in plugins] == sorted(by_name)
    assert all(set(p) == {"name", "module", "distribution", "version", "hooks", "status", "error", "notes"}
               for p in plugins)
    assert by_name["acme"] == {"name": "acme", "module": "acme_good", "distribution": "acme", "version": "2.0",
                               "hooks": ["register_losses"], "status": "ok", "error": None, "notes": []}
    assert by_name["acme-broken"]["status"] == "error"
    assert "No module named 'not_a_module_anywhere'" in by_name["acme-broken"]["error"]
    assert by_name["mnist"]["status"] == "disabled" and by_name["mnist"]["hooks"] == []
    assert by_name["torch"]["distribution"] == "regfw"
    table = invoke("plugins").stdout.splitlines()[1:]
    assert [line.split()[0] for line in table] == [p["name"] for p in plugins]


def test_trace_prints_each_hook_call_with_the_plugin_and_what_it_registered(fake_dist, invoke):
    fake_dist("acme", {"acme_good": GOOD}, {"acme": "acme_good"})
    fake_dist("acme-raises", {"acme_raises": RAISES}, {"acme-raises": "acme_raises"})
    traced = invoke("list", "losses", env={"REGFW_TRACE_PLUGINS": "1"})
    assert traced.exit_code == 0
    trace = [line for line in traced.stderr.splitlines() if line.startswith("regfw trace: ")]
    assert "regfw trace: register_losses -> acme: registered acme-l1, acme-l2" in trace
    assert "regfw trace: register_losses -> torch: registered mse, l1, huber, bce-with-logits, cross-entropy" in trace
    assert "regfw trace: register_models -> acme-raises: raised RuntimeError: model zoo offline" in trace
    assert "regfw trace: register_experiments -> linear: registered linear" in trace
    assert "acme-l1" in traced.stdout  # tracing changes nothing else
    quiet = invoke("list", "losses")
    assert "regfw trace" not in quiet.stderr and quiet.stdout == traced.stdout
