"""MLflow's ``index.html`` with regfw's start-up script, which runs before MLflow's own code.

MLflow 3.17.2's UI (read off its built JavaScript) takes its mode from ``?workflowType=`` or else
localStorage ``mlflow.workflowType_v1`` (a JSON string, ``"genai"`` when absent), and opens its
Assistant panel on a first visit unless ``mlflow.assistant.fab.autoOpenedOnFirstLoad_v1`` is true
(and ``mlflow.assistant.panelOpen_v1`` false). The script sets those where absent, so every page,
however it is reached, opens in Model-training mode with the Assistant closed; a user who switches
keeps the switch. Before an experiment's or a run's page is shown (the first load, every in-app
navigation through ``history.pushState``/``replaceState``, back/forward), it asks regfw's app for
that page's preset view (presets.py) and stores it where the browser holds none, or where the
columns are still the ones regfw chose; a view the user changed is theirs.
"""

from __future__ import annotations

import json

PRESET_PATH = "regfw/ui-preset"  # relative to the page: works under MLflow's --static-prefix too
DEFAULTS = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.assistant.panelOpen_v1": False,
}

SCRIPT = """<script>(function () {
  var store = window.localStorage, defaults = %(defaults)s, endpoint = %(endpoint)s;
  Object.keys(defaults).forEach(function (key) {
    if (store.getItem(key) === null) store.setItem(key, JSON.stringify(defaults[key]));
  });
  var RUN = /^#\\/experiments\\/[^/?#]+\\/runs\\/([0-9a-f]{32})/, EXPERIMENT = /^#\\/experiments\\/(\\d+)(?:[/?]|$)/;
  function ask(query) {
    // Synchronous on purpose: the preset must be in place before MLflow reads it for this page.
    try {
      var request = new XMLHttpRequest();
      request.open("GET", endpoint + "?" + query, false);
      request.send();
      return request.status === 200 ? JSON.parse(request.responseText) : null;
    } catch (e) { return null; }
  }
  function apply(preset) {
    if (!preset) return;
    var mark = "regfw.preset." + preset.key, current = store.getItem(preset.key), value = preset.value;
    if (current !== null) {
      // Only the managed field is kept current, and only while it is still what regfw wrote.
      var field = preset.managed, state;
      try { state = JSON.parse(current); } catch (e) { return; }
      if (!field || store.getItem(mark) !== JSON.stringify(state[field])) return;
      state[field] = value[field];
      value = state;
    }
    store.setItem(preset.key, JSON.stringify(value));
    if (preset.managed) store.setItem(mark, JSON.stringify(value[preset.managed]));
  }
  var current = null;  // the experiment being shown: moving within it asks nothing again
  function prepare(url) {
    var hash;
    try { hash = new URL(url, window.location.href).hash; } catch (e) { return; }
    var run = RUN.exec(hash), experiment = EXPERIMENT.exec(hash);
    if (run) {
      if (store.getItem("MLflowLocalStorage-1.1-RunPage-" + run[1] + "-model-chartUIState") === null)
        apply(ask("run=" + run[1]));
    }
    if (experiment && experiment[1] !== current) apply(ask("experiment=" + experiment[1]));
    current = experiment ? experiment[1] : null;
  }
  ["pushState", "replaceState"].forEach(function (name) {
    var original = window.history[name];
    window.history[name] = function (state, title, url) {
      if (url !== undefined && url !== null) prepare(String(url));
      return original.apply(this, arguments);
    };
  });
  window.addEventListener("popstate", function () { prepare(window.location.href); });
  window.addEventListener("hashchange", function () { prepare(window.location.href); });
  prepare(window.location.href);
})();</script>"""


def script() -> str:
    return SCRIPT % {"defaults": json.dumps(DEFAULTS), "endpoint": json.dumps(PRESET_PATH)}


def with_script(index_html: str) -> str:
    """``index_html`` with the script first in ``<head>``, before MLflow's deferred bundle."""
    marker = "<head>"
    at = index_html.find(marker)
    if at < 0:  # an index.html of another shape: still served, the script first
        return script() + index_html
    at += len(marker)
    return index_html[:at] + script() + index_html[at:]
