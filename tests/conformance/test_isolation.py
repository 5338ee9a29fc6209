"""Isolation seen from inside real guests: each microVM's network is a
namespace of its own; from inside one, a server standing for the internet
(in a namespace this test makes, routed from the host) answers, while the
host's own services and addresses and another microVM do not; a microVM
without egress reaches nothing. Its namespace goes with its processes (at
terminate and suspend), comes back on resume, and one left by a VM that died
while the server was down is removed when the server starts again."""

import json
import os
import pathlib
import signal
import subprocess
import tempfile
import time

import pytest

from clients import make_client
from conftest import build_example_app, wait_for, wait_microvm
from test_microvms import alive

TAG = str(os.getpid() % 10000)
INTERNET_NS = f"hinet{TAG}"
INTERNET_LINK = f"hxi{TAG}"
HOST_SIDE = "198.51.100.1"
INTERNET = "198.51.100.2"
WEB_PORT = 8080
HOST_PORT = 8093


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def netns_list():
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line]


def netns_of(microvm_id):
    return f"hvm-{microvm_id}"


class Lab:
    """The internet stand-in and the host's listeners, removed at the end."""

    def __init__(self):
        self.procs = []
        self.www = pathlib.Path(tempfile.mkdtemp(prefix="h-www-", dir="/tmp"))
        (self.www / "index.html").write_text("hello from outside\n")
        self.host_www = pathlib.Path(tempfile.mkdtemp(prefix="h-hwww-", dir="/tmp"))
        (self.host_www / "index.html").write_text("hello from the host\n")

    def internet(self):
        sh("ip", "netns", "add", INTERNET_NS)
        sh("ip", "-n", INTERNET_NS, "link", "set", "lo", "up")
        sh("ip", "link", "add", INTERNET_LINK, "type", "veth", "peer", "name", "eth0",
           "netns", INTERNET_NS)
        sh("ip", "addr", "add", f"{HOST_SIDE}/24", "dev", INTERNET_LINK)
        sh("ip", "link", "set", INTERNET_LINK, "up")
        sh("ip", "-n", INTERNET_NS, "addr", "add", f"{INTERNET}/24", "dev", "eth0")
        sh("ip", "-n", INTERNET_NS, "link", "set", "eth0", "up")
        sh("ip", "-n", INTERNET_NS, "route", "add", "default", "via", HOST_SIDE)
        self.httpd(INTERNET_NS, f"{INTERNET}:{WEB_PORT}", self.www)

    def httpd(self, netns, listen, www):
        prefix = ["ip", "netns", "exec", netns] if netns else []
        proc = subprocess.Popen(prefix + ["busybox", "httpd", "-f", "-p", listen, "-h", str(www)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        time.sleep(0.3)
        assert proc.poll() is None, f"httpd on {listen} did not start"
        return proc

    def stop(self, proc):
        proc.kill()
        proc.wait()
        self.procs.remove(proc)

    def close(self):
        for proc in list(self.procs):
            self.stop(proc)
        sh("ip", "link", "del", INTERNET_LINK, check=False)
        sh("ip", "netns", "del", INTERNET_NS, check=False)
        for path in (self.www, self.host_www):
            subprocess.run(["rm", "-rf", str(path)], check=False)


def fetch(server, microvm_id, host, port):
    """An HTTP GET from inside the guest with busybox nc; its output ('' when
    nothing answered)."""
    command = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 8 nc -w 3 {host} {port} "
               "2>/dev/null; true")
    return server.vm_exec(microvm_id, command)


def reaches_internet(server, microvm_id, tries=15):
    """Tries for a while: new links take a moment to carry traffic."""
    for _ in range(tries):
        if "hello from outside" in fetch(server, microvm_id, INTERNET, WEB_PORT):
            return True
        time.sleep(1)
    return False


def network_of(server, microvm_id):
    return json.loads((server.data_dir / "vms" / microvm_id / "network.json").read_text())


@pytest.fixture(scope="module")
def lab():
    lab = Lab()
    try:
        lab.internet()
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def iso(make_server, server, app_zip, lab):
    """A server of its own (it is restarted), with the example app built."""
    iso = make_server("iso", keys_from=server)
    return build_example_app(iso, app_zip, "iso")


@pytest.fixture(scope="module")
def pair(iso):
    """Two microVMs with internet egress (the default) and one without."""
    client = make_client(iso.endpoint)
    a = client.run_microvm(imageIdentifier="iso-app")["microvmId"]
    b = client.run_microvm(imageIdentifier="iso-app")["microvmId"]
    c = client.run_microvm(imageIdentifier="iso-app", egressNetworkConnectors=[])["microvmId"]
    try:
        for microvm_id in (a, b, c):
            wait_microvm(client, microvm_id)
        yield a, b, c
    finally:
        client = make_client(iso.endpoint) if iso.proc else None
        for microvm_id in (a, b, c):
            if client is not None:
                try:
                    client.terminate_microvm(microvmIdentifier=microvm_id)
                    wait_microvm(client, microvm_id, states=("TERMINATED",))
                except Exception:  # already gone, or the server is
                    pass
            sh("ip", "netns", "del", netns_of(microvm_id), check=False)


def test_each_microvm_has_its_own_namespace_and_the_same_guest_address(iso, pair):
    for microvm_id in pair:
        assert netns_of(microvm_id) in netns_list()
        assert network_of(iso, microvm_id)["netns"] == netns_of(microvm_id)
        addr = iso.vm_exec(microvm_id, "ip -4 addr show eth0")
        assert "inet 10.0.2.15/24" in addr
    uplinks = {network_of(iso, m)["host_if"] for m in pair}
    assert len(uplinks) == 3


def test_a_guest_reaches_the_internet_but_not_the_host_or_another_microvm(iso, pair, lab):
    a, b, _ = pair
    net_a, net_b = network_of(iso, a), network_of(iso, b)
    # The host's own services: the API and the endpoint listeners (HTTP and
    # HTTPS ingress), all on the host's loopback.
    service_ports = [url.rsplit(":", 1)[1].strip("/")
                     for url in (iso.endpoint, iso.ingress, iso.ingress_tls)]

    # Listeners the guest must not reach: on the host's loopback, on the
    # host's end of the guest's own uplink, on another of the host's
    # addresses, and inside microVM b's namespace.
    lab.httpd(None, f"127.0.0.1:{HOST_PORT}", lab.host_www)
    lab.httpd(None, f"{net_a['host_address']}:{HOST_PORT}", lab.host_www)
    lab.httpd(None, f"{HOST_SIDE}:{HOST_PORT}", lab.host_www)
    in_b = lab.httpd(net_b["netns"], f"{net_b['netns_address']}:{HOST_PORT}", lab.host_www)
    try:
        # They answer the host itself: what follows fails for isolation only.
        for host in ("127.0.0.1", net_a["host_address"], HOST_SIDE):
            out = sh("curl", "-s", "-m", "3", f"http://{host}:{HOST_PORT}/").stdout
            assert "hello from the host" in out, host
        out = sh("ip", "netns", "exec", net_b["netns"], "curl", "-s", "-m", "3",
                 f"http://{net_b['netns_address']}:{HOST_PORT}/").stdout
        assert "hello from the host" in out

        assert reaches_internet(iso, a), "guest a cannot reach the internet stand-in"
        assert reaches_internet(iso, b), "guest b cannot reach the internet stand-in"

        targets = [
            (host, port)
            for host in ("10.0.2.2", net_a["host_address"], HOST_SIDE)
            for port in [HOST_PORT, *service_ports]
        ] + [
            (net_b["host_address"], HOST_PORT),
            (net_b["netns_address"], HOST_PORT),
        ]
        for host, port in targets:
            got = fetch(iso, a, host, port)
            assert got == "", f"guest a reached {host}:{port}: {got!r}"
    finally:
        lab.stop(in_b)


def test_a_microvm_without_egress_reaches_nothing(iso, pair):
    _, _, c = pair
    ping = iso.vm_exec(c, "ping -c1 -W2 10.0.2.2 >/dev/null && echo up || echo down")
    assert ping.strip() == "up", "the guest without egress has no link at all"
    assert not reaches_internet(iso, c, tries=3)


def test_suspend_removes_the_namespace_and_resume_brings_a_working_one(iso, pair):
    _, b, _ = pair
    client = make_client(iso.endpoint)
    client.suspend_microvm(microvmIdentifier=b)
    wait_microvm(client, b, states=("SUSPENDED",))
    assert netns_of(b) not in netns_list()

    client.resume_microvm(microvmIdentifier=b)
    wait_microvm(client, b)
    assert netns_of(b) in netns_list()
    assert "inet 10.0.2.15/24" in iso.vm_exec(b, "ip -4 addr show eth0")
    assert reaches_internet(iso, b), "the resumed guest cannot reach the internet stand-in"


def test_terminate_leaves_no_namespace_link_or_rule(iso, pair):
    a, _, _ = pair
    net = network_of(iso, a)
    client = make_client(iso.endpoint)
    client.terminate_microvm(microvmIdentifier=a)
    wait_microvm(client, a, states=("TERMINATED",))
    assert net["netns"] not in netns_list()
    assert sh("ip", "link", "show", net["host_if"], check=False).returncode != 0
    ruleset = sh("nft", "list", "ruleset").stdout
    assert net["host_if"] not in ruleset and a not in ruleset


def test_a_namespace_left_by_a_vm_that_died_is_removed_at_start(iso, pair):
    _, b, c = pair
    iso.stop()
    # The VM dies outright, its shim first: nothing is left to clean up.
    state = iso.vm_state(b)
    for pid in (state["shim_pid"], state["qemu_pid"]):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: [alive(state["shim_pid"]), alive(state["qemu_pid"])],
             lambda got: not any(got), 10, "the killed vm")
    assert netns_of(b) in netns_list()

    iso.start()
    client = make_client(iso.endpoint)
    got = wait_microvm(client, b, states=("TERMINATED",))
    assert got["stateReason"]
    assert netns_of(b) not in netns_list()
    # The microVM that kept running keeps its network.
    assert client.get_microvm(microvmIdentifier=c)["state"] == "RUNNING"
    assert netns_of(c) in netns_list()
    client.terminate_microvm(microvmIdentifier=c)
    wait_microvm(client, c, states=("TERMINATED",))
    assert netns_of(c) not in netns_list()
