"""The test hosts of tests/hosts.py behave as separate machines: own addresses, own disks, a
shared folder, an S3 server both reach, a Ray cluster across both, and a worker host that can
die abruptly. Nothing of theirs is left behind. Needs root (CI has it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hosts import FAST_NODE_DEATH, PYTHON, TestNetwork, remove_stale, require_hosts

# With FAST_NODE_DEATH the GCS needs about 2 s; Ray's defaults about 15 s (measured here).
NODE_DEATH_BOUND_S = 10.0


def leftovers(net: TestNetwork) -> list[str]:
    """What of a closed network is still on the machine: namespaces, mounts, processes, folders."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    found += [f"netns {line}" for line in netns.splitlines() if net.id in line]
    mounts = Path("/proc/self/mountinfo").read_text()
    found += [f"mount {line}" for line in mounts.splitlines() if net.id in line]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if net.id.encode() in (cmdline := read_cmdline(pid)):
            found.append(f"process {pid}: {cmdline[:200]!r}")
    found += [f"process {pid} of {host.name}" for host in net.hosts for pid in host.processes()]
    if net.base.exists():
        found.append(f"folder {net.base}")
    return found


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_hosts()
    with TestNetwork(log_dir=tmp_path_factory.mktemp("host-logs")) as network:
        yield network
    assert leftovers(network) == []


@pytest.fixture(scope="module")
def s3(net):
    server = net.start_s3()
    for host in net.hosts:
        server.write_credentials(host)
    return server


@pytest.fixture(scope="module")
def cluster(net, s3):
    return net.start_ray(env=s3.endpoint_env | FAST_NODE_DEATH)


# A driver on the head: writes a file in the head's private folder and one in the shared
# folder, then runs one task pinned to each node; each task looks for both files and the
# head's Ray session dir, and writes a file in its own host's temp dir for the driver to look for.
DRIVER = r"""
import json, os, sys, tempfile, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
address, head_file, shared_file, head_ray_dir = sys.argv[1:5]
for path in (head_file, shared_file):
    with open(path, "w") as f:
        f.write("written by the driver on the head")

@ray.remote(num_cpus=1)
def look():
    mine = os.path.join(tempfile.gettempdir(), "written-by-task")
    with open(mine, "w") as f:
        f.write("written by a task")
    head_ray = os.listdir(head_ray_dir) if os.path.isdir(head_ray_dir) else []
    return {"ip": ray.util.get_node_ip_address(), "wrote": mine, "head_file": os.path.exists(head_file),
            "shared_file": os.path.exists(shared_file), "head_ray_dir": head_ray}

ray.init(address=address)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
pinned = [look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)) for n in nodes]
seen = ray.get([task.remote() for task in pinned])
for s in seen:
    s["driver_sees_task_file"] = os.path.exists(s["wrote"])
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_tasks_run_on_both_hosts_and_each_host_has_its_own_disk(net, cluster):
    head_file, shared_file = net.head.private / "head-only.txt", net.shared / "shared.txt"
    paths = [str(head_file), str(shared_file), str(net.head.ray_temp_dir)]
    done = net.head.run([PYTHON, "-c", DRIVER, cluster.address, *paths], env=cluster.env)
    seen = {s["ip"]: s for s in json.loads(done.stdout.splitlines()[-1])}
    assert set(seen) == {net.head.address, net.worker.address}
    on_head, on_worker = seen[net.head.address], seen[net.worker.address]

    assert on_head["head_file"] and on_head["shared_file"] and on_head["head_ray_dir"]
    assert on_worker["shared_file"]
    assert (
        not on_worker["head_file"] and on_worker["head_ray_dir"] == []
    )  # the head's disk is not the worker's

    # Each task wrote into its own host's temp dir: the worker's file exists on the worker's
    # disk (the machine sees every disk), and the driver on the head cannot see it.
    assert Path(on_worker["wrote"]).is_relative_to(net.worker.tmp) and Path(on_worker["wrote"]).exists()
    assert on_head["driver_sees_task_file"] and not on_worker["driver_sees_task_file"]


S3_CLIENT = r"""
import os, pickle, sys, pyarrow.fs as pafs
fs, path = pafs.FileSystem.from_uri(sys.argv[1])  # what Ray Tune does with storage_path="s3://..."
if sys.argv[2] == "write":
    with fs.open_output_stream(path) as f:
        f.write(sys.argv[3].encode())
else:
    with fs.open_input_stream(path) as f:
        print(f.read().decode())
"""

PICKLES = r"""
import os, pickle, sys, pyarrow.fs as pafs
secret, endpoint = os.environ["AWS_SECRET_ACCESS_KEY"].encode(), os.environ["AWS_ENDPOINT_URL"]
resolved, _ = pafs.FileSystem.from_uri(sys.argv[1])
explicit = pafs.S3FileSystem(endpoint_override=endpoint, access_key=os.environ["AWS_ACCESS_KEY_ID"],
                             secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
print(secret in pickle.dumps(resolved), endpoint.split("//")[1].encode() in pickle.dumps(resolved),
      secret in pickle.dumps(explicit))
"""


def test_s3_server_serves_both_hosts_and_checks_keys(net, s3):
    uri = s3.uri("hosts-test")
    # The head uses AWS's variables; the worker its ~/.aws/credentials (and the endpoint variable).
    net.head.run([PYTHON, "-c", S3_CLIENT, f"{uri}/from-head", "write", "hello from the head"], env=s3.env)
    read = net.worker.run([PYTHON, "-c", S3_CLIENT, f"{uri}/from-head", "read"], env=s3.endpoint_env)
    assert read.stdout.strip() == "hello from the head"
    net.worker.run(
        [PYTHON, "-c", S3_CLIENT, f"{uri}/from-worker", "write", "hello from the worker"], env=s3.endpoint_env
    )
    read = net.head.run([PYTHON, "-c", S3_CLIENT, f"{uri}/from-worker", "read"], env=s3.env)
    assert read.stdout.strip() == "hello from the worker"

    wrong = s3.env | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    refused = net.worker.run([PYTHON, "-c", S3_CLIENT, f"{uri}/no", "write", "x"], env=wrong, check=False)
    assert refused.returncode != 0 and "SIGNATURE_DOES_NOT_MATCH" in refused.stderr

    # What travels to Ray's workers when a filesystem is pickled: from_uri keeps the endpoint,
    # not the key (each node finds its own); a filesystem given the key explicitly carries it.
    keys_in_pickles = net.head.run([PYTHON, "-c", PICKLES, uri], env=s3.env).stdout.split()
    assert keys_in_pickles == ["False", "True", "True"]


@pytest.mark.slow
def test_killing_the_worker_host_drops_its_node(net, cluster, capsys):
    names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in net.worker.processes()}
    assert {"raylet", "ray"} <= names, names  # `ray start` (comm "ray") and its raylet live there

    killed_at = cluster.kill_worker()
    assert net.worker.processes() == []  # raylet, workers, agents: all gone at once
    detected_after = cluster.wait_for_nodes(1, timeout=NODE_DEATH_BOUND_S) - killed_at
    assert cluster.alive_nodes() == [net.head.address]
    with capsys.disabled():
        print(f"\nworker node declared dead {detected_after:.1f} s after SIGKILL ({FAST_NODE_DEATH})")

    cluster.start_worker()  # the host survives its processes: a node can join again
    assert cluster.alive_nodes() == sorted([net.head.address, net.worker.address])


def test_teardown_leaves_nothing_after_an_error():
    require_hosts()
    with pytest.raises(RuntimeError, match="the test failed"), TestNetwork() as net:
        # A daemon (own session, parent gone) and a mount inside the worker.
        net.worker.run("setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        net.worker.run(["mount", "-t", "tmpfs", "scratch", str(net.worker.tmp)])
        assert len(net.worker.processes()) == 1
        assert net.worker.address in net.worker.run(["ip", "-4", "-br", "addr"]).stdout
        raise RuntimeError("the test failed")
    assert leftovers(net) == []


KILLED_TEST = r"""
import sys
sys.path.insert(0, sys.argv[1])
from hosts import TestNetwork
net = TestNetwork().__enter__()
net.worker.run("setsid sleep 600 </dev/null >/dev/null 2>&1 &")
print(net.id, *net.worker.processes(), flush=True)
sys.stdin.read()
"""


def test_hosts_die_with_a_killed_test_process_and_the_next_run_cleans_up():
    require_hosts()
    tests = str(Path(__file__).parent)
    test = subprocess.Popen(
        [sys.executable, "-c", KILLED_TEST, tests], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        net_id, *daemon = test.stdout.readline().split()
        assert len(daemon) == 1, "the killed test process did not start its network"
        # The hosts' inits and their parents name the network's folder; the daemon does not.
        ours = [p for p in os.listdir("/proc") if p.isdigit() and net_id.encode() in read_cmdline(p)] + daemon
        assert len(ours) >= 5
    finally:
        test.send_signal(signal.SIGKILL)
        test.wait(30)
    deadline = time.monotonic() + 15
    while alive := [p for p in ours if Path(f"/proc/{p}").exists()]:
        assert time.monotonic() < deadline, f"processes {alive} outlived the killed test process"
        time.sleep(0.02)
    remove_stale()
    assert net_id not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not (Path("/tmp") / net_id).exists()


def read_cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
