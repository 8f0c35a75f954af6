"""Reading a table file: the checks before reading it, the reading, and a small cache.

The file is read once per content: ``dims`` reads it while the configuration is resolved (so bad
input fails before any MLflow run exists) and the factory then finds it here, unless the file
changed in between (size or modification time), in which case it is read again.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from regfw.errors import RegfwError

PARQUET_MAGIC = b"PAR1"
COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz", ".zst": "zstd"}
MEMORY_SHARE = 0.5  # a file may use at most this share of the available memory: parsing needs the rest
CACHED = 4  # tables kept in memory: enough for a train and a test file across a sweep's runs


@dataclass(frozen=True)
class Table:
    """A file read into a pandas DataFrame, with what the run records about it."""

    frame: object  # pandas.DataFrame
    path: Path  # as resolved
    name: str  # the file name, for tags and messages
    sha256: str
    size: int
    kind: str  # "csv" | "parquet"


_cache: OrderedDict = OrderedDict()


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes; None where there is no such file (not Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def read(key: str, text: str) -> Table:
    """The table at ``text`` (``key`` names the parameter in messages), or a one-line RegfwError.
    Through regfw's guarded reader: a FIFO, a device (``/dev/zero``) or a folder is refused from
    the open file's fstat, and nothing past the memory bound is read."""
    from regfw.files import open_regular

    opened = open_regular(text, key, "a CSV or Parquet file")
    try:
        path, info = opened.path, opened.info
        memory = available_memory()
        if memory is not None and info.st_size > MEMORY_SHARE * memory:
            # Refuse before reading a byte: being killed by the OOM killer is not a one-line error.
            raise RegfwError(f"{key}: {path.name} is {gigabytes(info.st_size)}, more than half of the "
                             f"{gigabytes(memory)} of memory available; train on a sample of it")
        stamp = (str(path.resolve()), info.st_size, info.st_mtime_ns)
        if stamp in _cache:
            _cache.move_to_end(stamp)
            return _cache[stamp]
        # The bound holds while reading too: a file that grows past it is refused, not read on.
        limit = int(MEMORY_SHARE * memory) if memory is not None else info.st_size
        try:
            raw = opened.read(limit, key)
        except OSError as exc:
            raise RegfwError(f"{key}: cannot read {text}: {exc.strerror or exc}") from None
    finally:
        opened.close()
    if not raw or raw.isspace():  # isspace: no copy of a large file
        raise RegfwError(f"{key}: {path.name} is empty")
    is_parquet = raw[:4] == PARQUET_MAGIC or path.suffix.lower() in (".parquet", ".pq")
    frame = _parquet(key, path, raw) if is_parquet else _csv(key, path, raw)
    if len(frame.columns) == 0:
        raise RegfwError(f"{key}: {path.name} has no columns")
    if len(frame) == 0:
        raise RegfwError(f"{key}: {path.name} has a header but no rows")
    table = Table(frame, path.resolve(), path.name, hashlib.sha256(raw).hexdigest(), info.st_size,
                  "parquet" if is_parquet else "csv")
    _cache[stamp] = table
    while len(_cache) > CACHED:
        _cache.popitem(last=False)
    return table


def _csv(key: str, path: Path, raw: bytes):
    import pandas as pd

    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSION.get(suffixes[-1]) if suffixes else None
    inner = suffixes[-2] if compression and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    sep = "\t" if inner in (".tsv", ".tab") else ","
    if compression is None and b"\x00" in raw[:4096]:
        raise RegfwError(f"{key}: {path.name} is not a table: it holds binary data, not CSV text")
    try:
        frame = pd.read_csv(io.BytesIO(raw), sep=sep, compression=compression, encoding="utf-8")
    except UnicodeDecodeError:
        raise RegfwError(f"{key}: {path.name} is not a table: it is not UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise RegfwError(f"{key}: {path.name} is empty") from None
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
        raise RegfwError(f"{key}: {path.name} is not a table: {detail[:160]}") from None
    except (OSError, ValueError, EOFError) as exc:  # a truncated .gz, say
        raise RegfwError(f"{key}: cannot read {path.name}: {' '.join(str(exc).split())[:160]}") from None
    _refuse_repeated_names(key, path, raw, sep, compression)
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ")]
    if len(frame.columns) == 1 or len(unnamed) == len(frame.columns):
        # One column: often a file with another separator (semicolons), or no header at all.
        first = str(frame.columns[0])
        raise RegfwError(f"{key}: {path.name} is not a table of comma-separated columns with a header "
                         f"(its first line reads {first[:60]!r})")
    return frame


def _refuse_repeated_names(key: str, path: Path, raw: bytes, sep: str, compression) -> None:
    """pandas renames a repeated header (``x1,x1`` -> ``x1``, ``x1.1``) and trains on both under
    names the file does not have: refuse it, naming the column and both positions."""
    import pandas as pd

    header = pd.read_csv(io.BytesIO(raw), sep=sep, compression=compression, encoding="utf-8", header=None,
                         nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in seen and name.strip():
            raise RegfwError(f"{key}: {path.name} names two columns {name!r} (columns {seen[name]} and {position}); "
                             "give each column its own name")
        seen.setdefault(name, position)


def _parquet(key: str, path: Path, raw: bytes):
    import pandas as pd

    try:
        return pd.read_parquet(io.BytesIO(raw))
    except ImportError:
        raise RegfwError(f"{key}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own types for a damaged file
        detail = " ".join(str(exc).split())[:160]
        raise RegfwError(f"{key}: {path.name} is not a Parquet table: {detail}") from None
