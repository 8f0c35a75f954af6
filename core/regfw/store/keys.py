"""Metric names as MLflow stores them: each in a chart section of MLflow's UI.

MLflow's UI draws one chart per metric and groups the charts into sections by the text before a
``/``, sections in alphabetical order, unprefixed metrics last. A run's summary values (``final_*``,
``best_*``, ``train_seconds``, ``optimum_loss``, ``excess_loss``) and learned parameters are
one-point metrics: unprefixed, they filled the page with single dots and pushed the real curves
below the fold. So the store files them under prefixes that sort after ``curves/``:

    train_loss        ->  curves/train_loss
    final_train_loss  ->  summary/final_train_loss
    learned.weight    ->  learned/weight

Everywhere else (the runner, ``regfw runs``/``compare``, ``--metric``, ``--sort`` and the
``metrics.NAME`` of ``--filter``) a metric keeps its plain name; this module is the one place that
translates, both ways. Runs written before the prefixes existed read back unchanged.
"""

from __future__ import annotations

import re

CURVES, SUMMARY, LEARNED = "curves", "summary", "learned"
SUMMARY_NAMES = ("train_seconds", "optimum_loss", "excess_loss")


def stored(name: str) -> str:
    """The MLflow key of regfw metric ``name``."""
    if name.startswith("learned."):
        return f"{LEARNED}/{name[len('learned.'):]}"
    if name.startswith(("final_", "best_")) or name in SUMMARY_NAMES:
        return f"{SUMMARY}/{name}"
    return f"{CURVES}/{name}"


def plain(key: str) -> str:
    """The regfw name of MLflow key ``key`` (the inverse of :func:`stored`)."""
    section, sep, rest = key.partition("/")
    if not sep or not rest:
        return key
    if section == LEARNED:
        return f"learned.{rest}"
    if section in (SUMMARY, CURVES):
        return rest
    return key


_FILTER_METRIC = re.compile(r"(?<![\w.`])(metrics?)\.(`[^`]*`|\"[^\"]*\"|[A-Za-z_][\w.\[\]/]*)")


def filter_string(text: str) -> str:
    """``metrics.final_train_loss < 0.1`` -> ``metrics.`summary/final_train_loss` < 0.1``.
    A name already quoted or already prefixed is left as written."""

    def repl(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if name[0] in "`\"" or "/" in name:
            return match.group(0)
        return f"{kind}.`{stored(name)}`"

    return _FILTER_METRIC.sub(repl, text)
