#!/usr/bin/env python
"""Regenerate the quoted terminal sessions of docs/reproducing.md from real commands.

Each session lives in docs/reproducing.md between ``<!-- generated: NAME -->`` and
``<!-- end generated: NAME -->``. This script runs the installed ``regfw`` on a new SQLite store in a
temporary folder (outside any git tree, one thread: the same facts on every machine), and replaces
those blocks, and only them, with each command and its standard output exactly as printed.

    python docs/tools/reproducing.py            # rewrite docs/reproducing.md
    python docs/tools/reproducing.py --print    # print the blocks, write nothing
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reproducing.md"
REGFW = str(Path(sys.executable).with_name("regfw"))
STORE = "sqlite:///mlflow.db"  # relative to the temporary folder: the same text in every regeneration
BLOCK = "<!-- generated: {name} -->\n{body}<!-- end generated: {name} -->"
RUN = ["run", "linear", "--epochs", "5", "--log-every", "1", "--device", "cpu", "-q"]


def regfw(folder: Path, args: list[str]) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("REGFW_")}
    env |= {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": STORE}
    done = subprocess.run([REGFW, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 4):  # 4: --verify found a difference, which the second session shows
        sys.exit(f"regfw {shlex.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.returncode, done.stdout


def session(folder: Path, args: list[str]) -> str:
    code, out = regfw(folder, args)
    shown = ["regfw", *args]
    return f"```\n$ {shlex.join(shown)}\n{out}" + (f"$ echo $?\n{code}\n" if code else "") + "```\n"


def blocks() -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="regfw-reproducing-") as name:
        folder = Path(name)
        regfw(folder, RUN)
        _, listing = regfw(folder, ["runs", "linear", "--json"])
        import json

        run_id = json.loads(listing)[0]["run_id"]
        short = run_id[:8]
        return {
            "identical": f"```\n$ regfw {shlex.join(RUN)}\n```\n" + session(folder, ["rerun", short, "--verify"]),
            "differs": session(folder, ["rerun", short, "--verify", "--set", "optimizer.lr=0.02"]),
        }


def replace(text: str, found: dict[str, str]) -> str:
    for name, body in found.items():
        pattern = re.compile(re.escape(f"<!-- generated: {name} -->") + r".*?" +
                             re.escape(f"<!-- end generated: {name} -->"), re.S)
        if not pattern.search(text):
            sys.exit(f"{DOC} has no block '{name}'")
        text = pattern.sub(lambda _: BLOCK.format(name=name, body=body), text)
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the blocks instead of rewriting the page")
    args = parser.parse_args(argv)
    found = blocks()
    if args.print:
        for name, body in found.items():
            print(BLOCK.format(name=name, body=body))
        return
    DOC.write_text(replace(DOC.read_text(encoding="utf-8"), found), encoding="utf-8")
    print(f"rewrote {len(found)} blocks of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
