"""Property-based bad input: whatever is typed into --set, a --config file or the command line
gives either a valid configuration or one `regfw: error: ...` line and a non-zero exit, never a
traceback and never the CLI's last-resort "unexpected" error.

Each property counts the cases it saw; together they are well over 1000 (the counts are
asserted, so a change that makes Hypothesis give up early fails the test).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regfw.config import DEVICE_RE, METRICS, TOP_KEYS, load_config_file, parse_set, resolve
from regfw.errors import RegfwError
from regfw.plugins import load_plugins

LOADED = load_plugins()
REGISTRY = LOADED.registry
EXPERIMENT = "linear"
BASE = resolve(REGISTRY, EXPERIMENT)
VALID_KEYS = sorted(set(BASE.flat_params()) - {"experiment"}) + [
    "model.hidden", "model.init_std", "optimizer.beta1", "train.nothing", "dataset.n_sample", "optimiser.lr",
]
KINDS = ("experiment", "model", "dataset", "loss", "optimizer")
ALL_NAMES = {kind: REGISTRY.names(kind) for kind in KINDS}
# Names drawn by the strategies: only regfw's own plugins, not whatever else happens to be installed.
NAMES = {kind: [e.name for e in REGISTRY.all(kind) if getattr(LOADED.info.get(e.plugin), "distribution", None) == "regfw"]
         for kind in KINDS}
FLAGS = ["--epochs", "--lr", "--batch-size", "--seed", "--log-every", "--device", "--model", "--dataset", "--loss",
         "--optimizer", "--set", "--config", "--bogus", "-x"]
def profile(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))

SPECIAL = ["", " ", "full", "Full", "null", "None", "~", "true", "false", "yes", "nan", "NaN", "inf", "-inf", "1e309",
           "-1e309", "0", "-0", "-1", "1", "2", "1.5", "-3.5", "1e-5", "1_000", "0x10", "[", "]", "[1, 2]", "[]", "[a, b]",
           "[1, [2]]", "{a: 1}", "{", "'", '"', "\\", "=", "==", "a=b", "auto", "cpu", "cuda", "cuda:0", "cuda:99", "mps",
           "tpu", "adam", "adm", "sgd", "mlp", "linear", "accuracy", "acuracy", "formula", "autograd", "mean", "\x00",
           "\n", "é", "💥", "-" * 3]


def huge(char: str):
    return st.integers(1_000, 60_000).map(lambda n: char * n)


VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers().map(str),
    st.integers(-3, 3).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=40),
    huge("9"), huge("x"),
)
KEYS = st.one_of(st.sampled_from(VALID_KEYS), st.sampled_from(list(TOP_KEYS)), st.text(max_size=30),
                 st.sampled_from(["", ".", "train.", ".lr", "optimizer..lr", "a.b.c", "seed.x", "=x"]))
SET_ITEMS = st.one_of(st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES), st.text(max_size=30))
# Values of the right kind for real keys, some out of range: many of these lists resolve.
PLAUSIBLE_VALUES = st.one_of(st.integers(-2, 10**7).map(str), st.floats(-1, 100).map(repr),
                             st.sampled_from(["full", "true", "false", "null", "[8, 4]", "accuracy", "cpu", "auto", "adam"]))
REAL_KEYS = sorted(set(BASE.flat_params()) - {"experiment", "device", "dataset", "model", "loss", "optimizer"})
PLAUSIBLE_ITEMS = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(REAL_KEYS), PLAUSIBLE_VALUES)


# -- checks --------------------------------------------------------------------------------------
def one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert len(message) < 800, len(message)  # whatever was typed is cut short in the message
    assert "Traceback" not in message


def assert_valid(config) -> None:
    """A configuration that resolved is really valid, and survives `show` -> --config unchanged."""
    train = config.train
    assert isinstance(train["epochs"], int) and not isinstance(train["epochs"], bool) and train["epochs"] >= 1
    assert train["batch_size"] == "full" or (isinstance(train["batch_size"], int) and train["batch_size"] >= 1)
    assert train["log_every"] is None or train["log_every"] >= 1
    assert set(train["metrics"]) <= set(METRICS) and train["grad"] in ("autograd", "formula")
    assert isinstance(config.seed, int) and config.seed >= 0 and DEVICE_RE.match(config.device)
    for part in ("dataset", "model", "loss", "optimizer"):
        assert getattr(config, part).name in ALL_NAMES[part]
        for value in getattr(config, part).params.values():
            assert not (isinstance(value, float) and not math.isfinite(value))
    if config.optimizer.name in ("sgd", "adam", "adamw", "rmsprop"):
        assert config.optimizer.params["lr"] > 0
    again = resolve(REGISTRY, config.experiment, config_file=yaml.safe_load(config.to_yaml()))
    assert again.to_dict() == config.to_dict()


def resolve_or_error(**kwargs):
    try:
        sets = parse_set(kwargs.pop("set_items", ()))
        config = resolve(REGISTRY, kwargs.pop("experiment", EXPERIMENT), sets=sets, **kwargs)
    except RegfwError as exc:
        one_line(str(exc))
        return None
    assert_valid(config)
    return config


def cli_outcome(result) -> str:
    """`ok` or `error`; anything else (traceback, several lines, last-resort error) fails."""
    if result.exit_code == 0:
        shown = yaml.safe_load(result.stdout)
        assert isinstance(shown, dict) and shown["experiment"] in ALL_NAMES["experiment"]
        return "ok"
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("regfw: error: ")]
    assert len(errors) == 1, result.stderr
    assert all(line.startswith("regfw: warning: ") for line in lines if line not in errors), result.stderr
    assert not errors[0].startswith("regfw: error: unexpected "), errors[0]  # the last resort must not be needed
    assert "Traceback" not in result.stderr
    return "error"


def run_counted(prop, minimum: int) -> dict:
    """Run a Hypothesis property and check it saw at least ``minimum`` cases."""
    seen = {"cases": 0, "ok": 0, "error": 0}
    prop(seen)
    assert seen["cases"] >= minimum, seen
    print(f"{prop.__qualname__ if hasattr(prop, '__qualname__') else prop}: {seen}")
    assert seen["ok"] and seen["error"], seen  # both outcomes were exercised
    return seen


# -- --set values --------------------------------------------------------------------------------
def test_set_values_give_a_valid_config_or_one_line():
    @profile(400)
    @given(st.one_of(st.lists(SET_ITEMS, max_size=4), st.lists(PLAUSIBLE_ITEMS, max_size=3)))
    def prop(seen, items):
        seen["cases"] += 1
        seen["ok" if resolve_or_error(set_items=items) else "error"] += 1

    run_counted(lambda seen: prop(seen), 380)


@pytest.mark.parametrize("item, needle", [
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("train.epochs=-5", "train.epochs must be at least 1"),
    ("train.epochs=2.5", "train.epochs expects an integer"),
    ("train.epochs=", "train.epochs expects an integer"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("train.batch_size=-1", "train.batch_size must be at least 1"),
    ("train.batch_size=half", "train.batch_size expects an integer or 'full'"),
    ("optimizer.lr=nan", "optimizer.lr must be a finite number"),
    ("optimizer.lr=inf", "optimizer.lr must be a finite number"),
    ("optimizer.lr=-0.1", "optimizer.lr must be greater than 0"),
    ("optimizer.lr=fast", "optimizer.lr expects a number"),
    ("optimizer.lrr=0.1", "did you mean 'lr'"),
    ("trian.epochs=3", "did you mean 'train'"),
    ("seed=-1", "seed must be at least 0"),
    ("device=tpu", "device must be auto, cpu, cuda, cuda:N or mps"),
    ("optimizer=adm", "did you mean 'adam'"),
    ("train.metrics=acuracy", "did you mean 'accuracy'"),
    ("model.in_features=" + "9" * 100_000, "model.in_features expects an integer"),
    ("dataset.n_samples=" + "x" * 100_000, "dataset.n_samples expects an integer"),
    ("noequals", "--set expects key=value"),
    ("=3", "--set expects key=value with a key"),
])
def test_named_bad_set_values(item, needle):
    with pytest.raises(RegfwError) as caught:
        resolve(REGISTRY, EXPERIMENT, sets=parse_set([item]))
    one_line(str(caught.value))
    assert needle in str(caught.value)


# -- --config files ------------------------------------------------------------------------------
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=20), st.sampled_from(SPECIAL))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.one_of(KEYS, st.integers()), inner, max_size=3)),
                     max_leaves=12)
SECTION = st.one_of(
    TREES,
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.sampled_from(NAMES["optimizer"] + ["adm", "lnear"]), SCALARS),
                                        "params": st.dictionaries(st.one_of(KEYS, st.sampled_from(["lr", "momentum", "n_samples"])),
                                                                  SCALARS, max_size=3)}),
)
CONFIG_DOCS = st.fixed_dictionaries({}, optional={
    "experiment": st.one_of(st.just(EXPERIMENT), SCALARS),
    "seed": SCALARS, "device": st.one_of(st.sampled_from(SPECIAL), SCALARS),
    "dataset": SECTION, "model": SECTION, "loss": SECTION, "optimizer": SECTION,
    "train": st.one_of(TREES, st.dictionaries(st.sampled_from(["epochs", "batch_size", "log_every", "metrics", "shuffle",
                                                               "grad", "epoch"]), SCALARS, max_size=4)),
    "unknown": SCALARS,
})
YAML_TEXTS = st.one_of(
    CONFIG_DOCS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    TREES.map(lambda d: yaml.safe_dump(d)),
    st.text(max_size=200),
    st.sampled_from(["", "---", "[", "{", ": :", "a: [1, 2", "train: {epochs: 0}", "train:\n  epochs: -3\n",
                     "optimizer:\n  params:\n    lr: .nan\n", "optimizer: {params: {lr: .inf}}", "seed: !!python/object:os.system ls",
                     "!!python/name:os.system", "\t- a", "a: &x [*x]", "[" * 5000, "- " * 3000 + "x", "x: " + "y" * 100_000,
                     "\xff\xfe garbage"]),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory(prefix="regfw-bad-input-") as folder:
        yield Path(folder)


@pytest.mark.slow
def test_config_files_give_a_valid_config_or_one_line(scratch):
    path = scratch / "config.yaml"

    @profile(400)
    @given(YAML_TEXTS)
    def prop(seen, text):
        seen["cases"] += 1
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            values = load_config_file(path)
        except RegfwError as exc:
            one_line(str(exc))
            seen["error"] += 1
            return
        seen["ok" if resolve_or_error(config_file=values) else "error"] += 1

    run_counted(lambda seen: prop(seen), 380)


def test_yaml_is_read_safely(scratch, tmp_path):
    """A python/object tag in --config is refused by safe_load: nothing is executed."""
    marker = tmp_path / "pwned"
    path = scratch / "evil.yaml"
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(RegfwError, match="is not valid YAML"):
        load_config_file(path)
    assert not marker.exists()


# -- command-line arguments (in-process CLI) -----------------------------------------------------
ARGS = st.lists(st.one_of(
    st.tuples(st.sampled_from(FLAGS), VALUES).map(list),
    st.tuples(st.just("--set"), SET_ITEMS).map(list),
    st.tuples(st.sampled_from(["--model", "--dataset", "--loss", "--optimizer"]),
              st.sampled_from(sum(NAMES.values(), []) + ["adm", "lnear", "mpl"])).map(list),
    st.sampled_from(SPECIAL).map(lambda v: [v]),
), max_size=4).map(lambda chunks: sum(chunks, []))


@pytest.mark.slow
def test_cli_arguments_give_yaml_or_one_line(invoke):
    experiments = st.one_of(st.just(EXPERIMENT), st.sampled_from(NAMES["experiment"]), st.sampled_from(SPECIAL),
                            st.text(max_size=20))

    @profile(300)
    @given(experiments, ARGS)
    def prop(seen, experiment, args):
        seen["cases"] += 1
        seen[cli_outcome(invoke("show", experiment, *args))] += 1

    run_counted(lambda seen: prop(seen), 280)


def _mutate(name: str, data) -> str:
    i = data.draw(st.integers(0, len(name) - 1))
    how = data.draw(st.sampled_from(["drop", "swap", "change", "double"]))
    if how == "drop" and len(name) > 3:
        return name[:i] + name[i + 1:]
    if how == "swap" and i < len(name) - 1:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    if how == "double":
        return name[:i] + name[i] + name[i:]
    return name[:i] + data.draw(st.sampled_from("aeioux")) + name[i + 1:]


@pytest.mark.slow
def test_misspelled_names_suggest_the_right_one(invoke):
    """An unknown experiment or component name close to a real one: one line with a did-you-mean."""
    kinds = {"experiment": None, "model": "--model", "dataset": "--dataset", "loss": "--loss", "optimizer": "--optimizer"}

    @profile(150)
    @given(st.sampled_from(sorted(kinds)), st.data())
    def prop(seen, kind, data):
        name = data.draw(st.sampled_from([n for n in NAMES[kind] if len(n) >= 3]))
        typo = _mutate(name, data)
        seen["cases"] += 1
        if typo in ALL_NAMES[kind]:
            seen["ok"] += 1
            return
        args = ["show", typo] if kinds[kind] is None else ["show", EXPERIMENT, kinds[kind], typo]
        result = invoke(*args)
        assert cli_outcome(result) == "error"
        seen["error"] += 1
        assert "did you mean '" in result.stderr, result.stderr

    seen = {"cases": 0, "ok": 0, "error": 0}
    prop(seen)
    assert seen["cases"] >= 140 and seen["error"] >= 120, seen


# -- a handful through the real script -----------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["run", "lnear", "--no-track"], "did you mean 'linear'"),
    (["show", "linear", "--epochs", "0"], "train.epochs must be at least 1"),
    (["show", "linear", "--batch-size", "-2"], "train.batch_size must be at least 1"),
    (["show", "linear", "--lr", "nan"], "optimizer.lr must be a finite number"),
    (["show", "linear", "--set", "optimizer.momentum=lots"], "optimizer.momentum expects a number"),
    (["show", "linear", "--config", "bad.yaml"], "is not valid YAML at line"),
    (["show", "linear", "--optimizer", "adm"], "did you mean 'adam'"),
    (["run", "linear", "--epochs", "x" * 5000], "is not a valid integer"),
])
def test_bad_input_through_the_installed_script(regfw_script, tmp_path, args, needle):
    (tmp_path / "bad.yaml").write_text("train: {epochs: [1, 2\n")
    result = regfw_script(*args)
    assert result.returncode not in (0, None) and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("regfw: error: "), result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
