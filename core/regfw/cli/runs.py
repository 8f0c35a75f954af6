"""``regfw runs`` and ``regfw compare``: the run store in the terminal."""

from __future__ import annotations

import click

TRACKING_HELP = "Store to read (default: $MLFLOW_TRACKING_URI or ./mlruns)."


def _split_keys(values) -> list[str]:
    out = []
    for value in values:
        out.extend(k.strip() for k in value.split(",") if k.strip())
    return out


@click.command()
@click.argument("experiment", required=False)
@click.option("--filter", "filter_string", metavar="QUERY",
              help="MLflow search syntax, e.g. \"params.optimizer.lr = '0.1'\" or \"metrics.final_train_loss < 0.1\".")
@click.option("--sweep", metavar="ID", help="Only the points of this sweep (its id is printed by `regfw sweep`).")
@click.option("--study", metavar="NAME", help="Only the trials of this `regfw tune` study, best first, with their state.")
@click.option("--sort", metavar="[-]KEY", help="Sort by a metric or param (or name, status, duration, start); '-' for descending.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many rows.")
@click.option("--group-by", "group_by", multiple=True, metavar="PARAM[,PARAM]",
              help="Aggregate runs with equal values of these params: mean ± std and count of each metric (repeatable).")
@click.option("--metric", "metrics", multiple=True, metavar="NAME[,NAME]",
              help="Metrics to show (default: every final_* and best_* metric; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tracking-uri", metavar="URI", help=TRACKING_HELP)
def runs(experiment, filter_string, sweep, study, sort, limit, group_by, metrics, as_json, tracking_uri):
    """List the runs of EXPERIMENT (or of every experiment) from the store.

    Shows each run's name, id, status, the params that differ between the listed runs, the
    final and best metrics and the duration. Sweep parent runs are left out: their points
    are listed.

    \b
    Examples:
      regfw runs linear
      regfw runs linear --sort final_train_loss --limit 5
      regfw runs linear --filter "params.optimizer = 'adam'"
      regfw runs linear --group-by optimizer.lr         # mean ± std over seeds
    """
    from regfw.cli import format as text
    from regfw.runs import queries, stats
    from regfw.store import open_client, tracking_uri as resolve_uri

    uri = resolve_uri(tracking_uri)
    client = open_client(uri)
    by = _split_keys(group_by)
    simple = not sort and not by
    rows = queries.search(client, uri, experiment, filter_string=filter_string or "", sweep=sweep,
                          study=study, max_results=limit if simple and not study else None)
    if study:
        return _study_table(client, uri, experiment, study, rows, sort, limit, as_json, metrics)
    wanted = stats.check_metrics(rows, _split_keys(metrics)) if metrics else stats.summary_metrics(rows)

    if by:
        groups, over = stats.group_rows(rows, by, wanted)
        groups = stats.sort_groups(groups, sort, by)[:limit]
        if as_json:
            click.echo(stats.json_safe_dumps([g.to_json(over) for g in groups]))
            return
        if not groups:
            click.echo("no runs")
            return
        headers = list(by) + ["runs", "status"] + wanted
        body = []
        for g in groups:
            statuses = g.statuses()
            status = "all FINISHED" if set(statuses) == {"FINISHED"} else \
                ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
            body.append([text.fmt(g.values[k]) for k in by] + [str(len(g.rows)), status]
                        + [text.fmt_mean_std(g.stats.get(m)) for m in wanted])
        right = set(range(len(by), len(by) + 1)) | set(range(len(by) + 2, len(headers)))
        text.echo_table(headers, body, right)
        n_runs = sum(len(g.rows) for g in groups)
        over_text = f"; mean ± std (n-1) over {', '.join(over)}" if over else ""
        click.echo(f"{len(groups)} group{'s' * (len(groups) != 1)} of {n_runs} runs{over_text}")
        return

    rows = stats.sort_rows(rows, sort)[:limit]
    if as_json:
        click.echo(stats.json_safe_dumps([r.to_json() for r in rows]))
        return
    if not rows:
        click.echo("no runs")
        return
    keys = stats.differing_params(rows)
    several = len({r.experiment for r in rows}) > 1
    headers = ["run", "id"] + (["experiment"] if several else []) + ["status"] + keys + wanted + ["duration"]
    body = []
    for r in rows:
        body.append([r.name, text.short_id(r.run_id)] + ([r.experiment] if several else []) + [r.status]
                    + [text.fmt(r.params.get(k)) for k in keys]
                    + [text.fmt(r.metrics.get(m)) for m in wanted] + [text.fmt_duration(r.duration)])
    first_metric = len(headers) - len(wanted) - 1
    text.echo_table(headers, body, set(range(first_metric, len(headers))))


def _study_table(client, uri, experiment, study, rows, sort, limit, as_json, metrics) -> None:
    """``regfw runs EXPERIMENT --study NAME``: trials best first (by the study's metric), with state."""
    from regfw.cli import format as text
    from regfw.errors import RegfwError
    from regfw.runs import queries, stats
    from regfw.store import tags as T

    parents = [r for r in queries.search(client, uri, experiment, study=study, include_parents=True)
               if r.tags.get(T.ROLE) == T.ROLE_STUDY]
    if not parents:
        raise RegfwError(f"no study '{study}' in {uri}" + (f" for experiment {experiment}" if experiment else ""))
    metric = parents[0].tags.get(T.STUDY_METRIC, "final_train_loss")
    sign = -1 if parents[0].tags.get(T.STUDY_DIRECTION) == "maximize" else 1
    if sort:
        rows = stats.sort_rows(rows, sort)
    else:
        rows = sorted(rows, key=lambda r: (metric not in r.metrics or r.tags.get(T.TRIAL_STATE) != "complete",
                                           sign * r.metrics.get(metric, 0.0), int(r.tags.get(T.TRIAL, 0))))
    rows = rows[:limit]
    if as_json:
        click.echo(stats.json_safe_dumps([r.to_json() | {"trial": r.tags.get(T.TRIAL),
                                                          "state": r.tags.get(T.TRIAL_STATE)} for r in rows]))
        return
    if not rows:
        click.echo("no trials")
        return
    wanted = stats.check_metrics(rows, _split_keys(metrics)) if metrics else [metric]
    keys = stats.differing_params(rows)
    headers = ["trial", "state", "run", "id", "status"] + keys + wanted + ["duration"]
    body = [[r.tags.get(T.TRIAL, "?"), r.tags.get(T.TRIAL_STATE, "?"), r.name, text.short_id(r.run_id), r.status]
            + [text.fmt(r.params.get(k)) for k in keys] + [text.fmt(r.metrics.get(m)) for m in wanted]
            + [text.fmt_duration(r.duration)] for r in rows]
    text.echo_table(headers, body, {0} | set(range(len(headers) - len(wanted) - 1, len(headers))))


@click.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID RUN_ID...")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Overlay their loss (and accuracy) curves in one picture.")
@click.option("--all-params", is_flag=True, help="Show every param, not only those that differ.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--tracking-uri", metavar="URI", help=TRACKING_HELP)
def compare(run_ids, plot_path, all_params, as_json, tracking_uri):
    """Compare runs side by side: the params that differ and every summary metric.

    A RUN_ID may be shortened to a unique prefix, as `regfw runs` prints it.

    \b
    Examples:
      regfw compare 3f2a9c1e 8b0d4471
      regfw compare 3f2a9c1e 8b0d4471 5c1e07aa --plot compare.png
    """
    from regfw.cli import format as text
    from regfw.errors import RegfwError
    from regfw.runs import queries, stats
    from regfw.store import open_client, tracking_uri as resolve_uri

    if len(run_ids) < 2:
        raise RegfwError("compare needs at least two run ids (see `regfw runs` for them)")
    if plot_path:  # before the store is asked: a plot that cannot be written is one line at once
        from regfw.files import check_output_file, check_path_length
        from regfw.plots import plot_file

        check_output_file(plot_file(check_path_length(plot_path, "--plot")), "--plot")
    uri = resolve_uri(tracking_uri)
    client = open_client(uri)
    rows = queries.get_runs(client, uri, list(run_ids))
    if len({r.run_id for r in rows}) < len(rows):
        raise RegfwError("the same run is given twice")
    keys = stats.differing_params(rows)
    if all_params:
        keys = list(dict.fromkeys(k for r in rows for k in r.params))
    metrics = stats.compare_metrics(rows)
    panels = None
    if plot_path:
        from regfw.plots import ACCURACY_CURVES, LOSS_CURVES, overlay, plot_file

        plot_path = plot_file(plot_path)  # the file really written, for the message
        curves = queries.histories(client, rows, LOSS_CURVES + ACCURACY_CURVES)
        panels = overlay(curves, stats.labels(rows), plot_path)
    if as_json:
        click.echo(stats.json_safe_dumps({"runs": [r.to_json() for r in rows], "differing_params": stats.differing_params(rows),
                                        "plot": str(plot_path) if plot_path else None, "panels": panels}))
        return
    headers = [""] + [text.short_id(r.run_id) for r in rows]
    body = [["name"] + [r.name for r in rows],
            ["experiment"] + [r.experiment for r in rows],
            ["status"] + [r.status for r in rows],
            ["duration"] + [text.fmt_duration(r.duration) for r in rows]]
    if keys:
        body.append(["params" + (" (all)" if all_params else " that differ")] + [""] * len(rows))
        body += [[f"  {k}"] + [text.fmt(r.params.get(k)) for r in rows] for k in keys]
    else:
        body.append(["params: all equal"] + [""] * len(rows))
    if metrics:
        body.append(["metrics"] + [""] * len(rows))
        body += [[f"  {m}"] + [text.fmt(r.metrics.get(m)) for r in rows] for m in metrics]
    text.echo_table(headers, body)
    if plot_path:
        click.echo(f"plot ({', '.join(panels)}) written to {plot_path}")


COMMANDS = [runs, compare]
