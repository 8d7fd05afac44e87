"""Process groups (sweeplab.processes): a command and everything it starts stop as one."""

from __future__ import annotations

import subprocess

from sweeplab.processes import group_alive, start_group, stop


def test_a_group_stops_with_sigterm_children_included():
    proc = start_group(["bash", "-c", "sleep 300 & sleep 300 & wait"], stdout=subprocess.DEVNULL)
    assert group_alive(proc.pid)
    assert stop(proc, grace_s=30) is False  # SIGTERM was enough: nothing killed
    assert not group_alive(proc.pid) and proc.returncode is not None


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period():
    # ignored signals stay ignored in the children: the whole group shrugs off SIGTERM
    script = "trap '' TERM; sleep 300 & sleep 300 & echo ready; wait"
    proc = start_group(["bash", "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"  # the trap is set before the signal comes
    assert stop(proc, grace_s=0.5) is True
    assert not group_alive(proc.pid)


def test_a_group_whose_leader_died_is_still_stopped():
    """An orphaned worker keeps the group: it is found by the leader's PID and stopped."""
    proc = start_group(["bash", "-c", "sleep 300 & exit 0"], stdout=subprocess.DEVNULL)
    proc.wait(30)
    assert group_alive(proc.pid)  # the sleep lives on in the leader's group
    assert stop(proc, grace_s=30) is False
    assert not group_alive(proc.pid)
