"""Write a set of output files so that a failure leaves the previous ones as they were.

Every file is first written in full (and flushed to disk) under a temporary name in the target folder; only
then is each renamed over its target with os.replace, which is atomic per file. A failure while writing
(a full disk, a rendering error before this point) removes the temporaries and changes nothing visible; the
renames themselves, within one folder, do not fail in practice.
"""

from __future__ import annotations

import os
from pathlib import Path


def _temp_name(folder: Path, name: str) -> Path:
    return folder / f".{name}.tmp-{os.getpid()}"


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write {name: content} into `folder` (created if needed): all of them or, on failure, none."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        if (folder / name).is_dir():
            raise IsADirectoryError(21, "a folder stands where an output file goes", str(folder / name))
    written: list[Path] = []
    try:
        for name, content in files.items():
            temp = _temp_name(folder, name)
            written.append(temp)
            with open(temp, "wb") as f:  # the usual permissions (umask), unlike mkstemp's 0600
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for temp in written:
            temp.unlink(missing_ok=True)
        raise
    for name in files:
        os.replace(_temp_name(folder, name), folder / name)
