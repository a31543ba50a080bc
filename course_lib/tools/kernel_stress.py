"""Stress the Jupyter kernel's request/reply path, to catch a kernel that stops answering.

The course executes notebooks through ``nbclient`` (``course check``, ``course bench``, nbval,
nbgrader) and learners through JupyterLab. A kernel that silently leaves a request unread makes
all of those wait forever. This module sends many requests in the patterns that exposed such a
hang (ipykernel issue 1554: a shell request that arrives while a reply is being sent is never read):

* bursts of ``execute_request`` sent back to back, each printing a little output, without waiting;
* while the burst runs, short-lived extra shell connections that send one ``kernel_info_request``
  and close before its reply arrives (what jupyter_server does for every new browser tab).

Every reply must arrive within ``reply_timeout`` seconds; a missing one counts as a hang and the
kernel is replaced. Run from a terminal::

    python -m course_lib.tools.kernel_stress --seconds 120          # prints rounds, requests, hangs
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from dataclasses import dataclass

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.manager import KernelManager


@dataclass
class StressResult:
    kernels: int = 0
    rounds: int = 0
    requests: int = 0
    hangs: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.kernels} kernel(s), {self.rounds} rounds, {self.requests} requests, "
                f"{self.hangs} hang(s) in {self.seconds:.0f} s")


def _nudge(km: KernelManager) -> None:
    """Open a fresh shell connection, ask for kernel_info, and close without reading the reply."""
    client = BlockingKernelClient(connection_file=km.connection_file)
    client.load_connection_file()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    client.kernel_info()
    client.stop_channels()


def _round(km: KernelManager, client, burst: int, reply_timeout: float) -> tuple[int, bool]:
    """One burst; returns (requests sent, whether every reply arrived)."""
    ids = []
    for i in range(burst):
        ids.append(client.execute(f"print({i} * 'x')", store_history=False))
        if i % 4 == 0:
            _nudge(km)
    pending = set(ids)
    deadline = time.monotonic() + reply_timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return len(ids), False
        try:
            msg = client.get_shell_msg(timeout=left)
        except queue.Empty:
            return len(ids), False
        pending.discard(msg["parent_header"].get("msg_id"))
        deadline = time.monotonic() + reply_timeout
    return len(ids), True


def stress(seconds: float = 60.0, burst: int = 40, reply_timeout: float = 20.0) -> StressResult:
    """Send request bursts for about ``seconds``; count bursts whose replies stopped coming."""
    result = StressResult()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(extra_arguments=["--HistoryManager.hist_file=:memory:"])
        result.kernels += 1
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            for _ in range(25):
                if time.monotonic() - start >= seconds:
                    break
                sent, ok = _round(km, client, burst, reply_timeout)
                result.rounds += 1
                result.requests += sent
                if not ok:
                    result.hangs += 1
                    break  # this kernel is wedged: start a fresh one
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=True)
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--reply-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    import ipykernel

    result = stress(args.seconds, args.burst, args.reply_timeout)
    print(f"ipykernel {ipykernel.__version__}: {result}", flush=True)
    return 0 if result.hangs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
