"""A start that waits for another process training the demo model says so (no silent wait)."""

from __future__ import annotations

import subprocess
import sys
import threading

from dass.sem import demo

HOLDER = r"""
import fcntl, sys
fh = open(sys.argv[1], "w")
fcntl.flock(fh, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our input
"""


def test_waiting_for_another_training_is_reported(tmp_path):
    target = tmp_path / "sem-demo-model-x.pt"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target.with_suffix(".lock"))],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        waits: list[float] = []
        reported = threading.Event()
        acquired = threading.Event()

        def on_wait(seconds: float) -> None:
            waits.append(seconds)
            reported.set()

        def take() -> None:
            with demo._locked(target, on_wait=on_wait):
                acquired.set()

        worker = threading.Thread(target=take)
        worker.start()
        assert reported.wait(60), "the waiting start said nothing"
        assert not acquired.is_set()  # still waiting while the other process holds the lock
        holder.stdin.close()  # the other training ends
        worker.join(60)
        assert acquired.is_set() and waits and waits[0] >= 0
    finally:
        holder.kill()
        holder.wait()


def test_no_wait_no_message(tmp_path):
    calls: list[float] = []
    with demo._locked(tmp_path / "m.pt", on_wait=calls.append):
        pass
    assert calls == []
