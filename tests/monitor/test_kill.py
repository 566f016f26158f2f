"""Acceptance: a SIGKILLed logger keeps every row whose `log` returned, and no partial batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from tunelens.store import open_store

BATCH = 500

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tunelens.monitor import Monitor

    path, start = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(start)
    mon = Monitor("killed", path, resources=False, task="binary", classes=[0, 1])
    done = start
    while True:
        ids = np.arange(done, done + {batch})
        p = rng.random({batch})
        done += mon.log(ids, rng.random(({batch}, 5)), (p > 0.5).astype(int), p, latency_ms=1.0)
        print(done, flush=True)
    """
).format(batch=BATCH)


def _run_and_kill(script: Path, path: Path, start: int, after_lines: int) -> int:
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = start
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for _ in range(after_lines):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                break
            last = int(line)
        time.sleep(0.005)  # land inside the next call
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # a line printed between the last read and the kill counts as returned too
        rest = proc.stdout.read()
        for line in rest.split():
            last = max(last, int(line))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return last


def test_sigkill_mid_loop_keeps_every_returned_row_and_nothing_partial(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "killed.duckdb"
    returned = 0
    for after in (7, 13):
        returned = _run_and_kill(script, path, returned, after)
        store = open_store(str(path))
        try:
            stored, _ = store.count("killed")
            assert stored >= returned
            assert stored % BATCH == 0  # no partial batch
            assert stored - returned <= BATCH  # at most the call that was cut short
            table = store.scan("killed", columns=["id", "prediction", "score", "f:f4"])
            ids = np.sort(table["id"].to_numpy(zero_copy_only=False).astype(np.int64))
            np.testing.assert_array_equal(ids, np.arange(stored))
            assert table["f:f4"].null_count == 0 and table["score"].null_count == 0
        finally:
            store.close()
        returned = stored  # the next writer continues after what is stored
    assert returned >= 20 * BATCH
