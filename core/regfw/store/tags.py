"""Every tag name regfw writes on an MLflow run, in one place.

Readers (``regfw runs``, ``compare``, ``resume``) and writers (the runner, checkpoints, sweeps) use
these names only through this module, so a tag is renamed in one line.
"""

PREFIX = "regfw."

# What a run is made of.
EXPERIMENT = "regfw.experiment"
EXPERIMENT_PLUGIN = "regfw.experiment.plugin"
DEVICE = "regfw.device"
DEVICE_NAME = "regfw.device_name"
SEED = "regfw.seed"
VERSION = "regfw.version"
TORCH_VERSION = "regfw.torch_version"
PYTHON_VERSION = "regfw.python_version"
MLFLOW_VERSION = "regfw.mlflow_version"
THREADS = "regfw.threads"  # torch's intra-op CPU threads the run trained with
GIT_COMMIT = "mlflow.source.git.commit"
GIT_DIRTY = "regfw.git_dirty"  # "true": tracked files differed from the commit when the run started
# sha256 of the dataset's tensors as built (train and test, dtype, shape and bytes): a changed file
# or generator shows here. A file-backed dataset also records its file's own regfw.data.sha256.
DATA_FINGERPRINT = "regfw.data.fingerprint"
NOTE = "mlflow.note.content"  # the description MLflow's UI shows

# On an experiment: MLflow's UI opens an experiment of this kind on its runs (model training),
# not on its GenAI traces view.
EXPERIMENT_KIND = "mlflow.experimentKind"
KIND_TRAINING = "custom_model_development"

# The colour MLflow's UI draws a run in (its own pick is a hash of the run id, which can give a
# sweep's points near-identical colours). A sweep's parent is grey, its points distinct colours.
RUN_COLOR = "mlflow.runColor"
PARENT_COLOR = "#8c8c8c"
POINT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def point_color(index: int) -> str:
    return POINT_COLORS[index % len(POINT_COLORS)]


def component(part: str) -> str:
    """``regfw.model``: the registered name of the run's model (dataset, loss, optimizer)."""
    return f"regfw.{part}"


def component_plugin(part: str) -> str:
    """``regfw.model.plugin``: the plugin (and distribution) that provided it."""
    return f"regfw.{part}.plugin"


# How it ended.
FAILURE = "regfw.failure"  # the reason of a FAILED or KILLED run
EPOCHS_DONE = "regfw.epochs_done"

# Reproducing (`regfw rerun`, `regfw run --from`).
RERUN_OF = "regfw.rerun_of"  # the run this one repeats
STARTED_FROM = "regfw.started_from"  # the run whose configuration this one started from
VERDICT = "regfw.verdict"  # on both runs after `rerun --verify`: identical | within REL | differs
VERDICT_DETAIL = "regfw.verdict_detail"  # the first difference, and how many values differ
VERIFIED_BY = "regfw.verified_by"  # on the original: the rerun that checked it

# Checkpoints and resuming.
CHECKPOINT_EPOCH = "regfw.checkpoint_epoch"
CHECKPOINT_EVERY = "regfw.checkpoint_every"
RESUMED_FROM = "regfw.resumed_from_epoch"
HOST = "regfw.host"
PID = "regfw.pid"

# Sweeps: a parent run and one child per point.
ROLE = "regfw.role"  # "sweep" on parent runs
ROLE_SWEEP = "sweep"
SWEEP_ID = "regfw.sweep_id"
SWEEP_POINT = "regfw.sweep_point"
SWEEP_INDEX = "regfw.sweep_index"
SWEEP_POINTS = "regfw.sweep_points"
SWEEP_AXES = "regfw.sweep_axes"
SWEEP_FAILED = "regfw.sweep_failed"
SWEEP_FINISHED = "regfw.sweep_finished"
SWEEP_NOT_RUN = "regfw.sweep_not_run"
PARENT = "mlflow.parentRunId"
# Sweeps on Ray (--backend ray): where a point ran, and which try it was when --retries ran it again.
RAY_NODE = "regfw.ray_node"  # the worker node's IP address, as Ray knows it (plus regfw.host, regfw.pid)
ATTEMPT = "regfw.attempt"  # 2, 3...: the point's worker died before; absent on a first attempt
# Vectorized sweeps (--vectorize): the stacked program a child run trained in, "bucket 2, 32 points".
BUCKET = "regfw.bucket"
JOINED_AT = "regfw.bucket_joined_at"  # a search's refilled stack: the step it joined at (its epoch 1 is the next)
# Data-parallel runs (torchrun, `regfw run --nproc N`); absent on a single-process run.
WORLD_SIZE = "regfw.world_size"  # the number of processes that trained the run
DIST_BACKEND = "regfw.dist_backend"  # gloo (CPU) or nccl (CUDA)
# Searches (`regfw tune`): the study's parent run and one child per trial.
ROLE_STUDY = "study"
STUDY = "regfw.study"  # the Optuna study's name, on the parent and on every trial
STUDY_STORAGE = "regfw.study_storage"
STUDY_METRIC = "regfw.study_metric"  # the objective, a plain metric name (final_test_loss)
STUDY_DIRECTION = "regfw.study_direction"  # minimize | maximize
STUDY_BEST_RUN = "regfw.study_best_run"  # the best trial's run id so far (the metric best_value beside it)
TRIAL = "regfw.trial"  # the Optuna trial number
TRIAL_STATE = "regfw.trial_state"  # complete | pruned | failed
PRUNED_AT = "regfw.pruned_at_epoch"
