"""``sequence``: the 1D-CNN + BiLSTM + attention model from document 000's appendix, learning
the period of a sine burst hidden at a random position in noise.

The appendix (not one of the seven experiments) defines ``CNN_LSTM_Attention(input_dim,
hidden_dim, output_dim, num_layers, dropout_prob, kernel_size, stride)``; here it is the model
``cnn-lstm-attention`` with ``in_channels``, ``hidden``, ``out_features``, ``num_layers``,
``dropout``, ``kernel_size``, ``stride`` (and ``seq_len``, only to check the length). The
document gives no data and no training; the dataset ``sine-bursts`` and the recipe are regfw's:
``length`` steps of N(0, noise²) on ``channels`` channels, and in ``burst`` consecutive steps at a
random position ``sin(2π·t/period + phase)`` added, the phase uniform per sample and channel and
the period one of ``n_classes`` evenly spaced values; the label is the period's index. Inputs are
``(batch, length, channels)``, the task ``multiclass``; cross-entropy, Adam lr 0.003, shuffled
batches of 64, 20 epochs, accuracy. The convolutions see the burst wherever it is; a plain MLP
(``--model mlp``) must learn it at every position from the same 2000 samples, and overfits.
The bugs the model fixes are listed in :class:`regfw_sequence.model.CnnLstmAttention`.

Sizes come from the dataset (``in_channels``, ``out_features``, ``seq_len``; ``in_features`` is
``length * channels`` for ``--model mlp``, which flattens the sequence). A sequence shorter than
the conv + max-pool stack consumes is a one-line error with the minimum length.
"""

from regfw import Param, RegfwError, hookimpl

SIZE = "(default: from the dataset)"


def make_model(in_channels, hidden, out_features, num_layers, dropout, kernel_size, stride, seq_len):
    if in_channels is None or out_features is None:
        raise RegfwError("model 'cnn-lstm-attention' needs in_channels and out_features "
                         "(set model.in_channels=... and model.out_features=...)")
    from regfw_sequence.model import CnnLstmAttention, min_length

    need = min_length(kernel_size, stride)
    if seq_len is not None and seq_len < need:
        raise RegfwError(f"model 'cnn-lstm-attention' needs sequences of at least {need} steps with "
                         f"kernel_size {kernel_size} and stride {stride}, got {seq_len}")
    return CnnLstmAttention(in_channels, hidden, out_features, num_layers, dropout, kernel_size, stride)


def make_data(generator, **params):
    from regfw_sequence.data import sine_bursts

    return sine_bursts(generator, **params)


def dims(p):
    return {"in_channels": p["channels"], "in_features": p["length"] * p["channels"],
            "out_features": p["n_classes"], "seq_len": p["length"], "task": "multiclass"}


@hookimpl
def register_models(register):
    register("cnn-lstm-attention", make_model,
             description="3×(Conv1d+ReLU+max-pool), BiLSTM, attention over time, Linear; input (batch, length, channels)",
             params={
                 "in_channels": Param(None, type=int, min=1, help="channels per step " + SIZE),
                 "hidden": Param(32, min=1, help="conv channels and LSTM hidden size (per direction)"),
                 "out_features": Param(None, type=int, min=1, help="classes " + SIZE),
                 "num_layers": Param(1, min=1, help="stacked LSTM layers"),
                 "dropout": Param(0.0, min=0.0, help="between LSTM layers, and on the attention weights"),
                 "kernel_size": Param(3, min=1, help="of every conv and max-pool"),
                 "stride": Param(1, min=1, help="of every conv and max-pool"),
                 "seq_len": Param(None, type=int, min=1, help="checked against the minimum length " + SIZE),
             })


@hookimpl
def register_datasets(register):
    register("sine-bursts", make_data,
             description="Which of n_classes periods a sine burst at a random position in noise has; x is (n, length, channels)",
             params={"length": Param(128, min=1), "channels": Param(1, min=1), "n_classes": Param(4, min=2),
                     "n_train": Param(2000, min=1), "n_test": Param(1000, min=1),
                     "min_period": Param(4.0, gt=0.0, help="steps per cycle of class 0"),
                     "max_period": Param(10.0, gt=0.0, help="steps per cycle of the last class"),
                     "burst": Param(16, type=int, min=1, help="steps carrying the sine, at a random position "
                                    "(null, or more than length: all of them)"),
                     "noise": Param(0.5, min=0.0, help="std of the Gaussian noise on every step")},
             dims=dims)


@hookimpl
def register_experiments(register):
    register("sequence",
             description="The period of a sine burst hidden in noise, with the 1D-CNN + BiLSTM + attention model (document 000 appendix)",
             dataset="sine-bursts", model="cnn-lstm-attention", loss="cross-entropy", optimizer=("adam", {"lr": 0.003}),
             train={"epochs": 20, "batch_size": 64, "shuffle": True, "metrics": ["accuracy"]})
