"""Python against Rust: the Rust peer (handoff/examples/interop_peer) is
spawned for each test; both sides check what they receive."""

import os
import subprocess
import sys
import threading

import pytest

import peer
import shared
from handoff import Channel, Listener, kinds, rpc, startup, typed


@pytest.fixture
def spawn(rust_peer, tmp_path):
    """Starts the Rust peer with a role and a socket path, waits for its
    `ready`; at the end waits for it and asserts it exited 0."""
    children = []

    def start(role, *args):
        path = str(tmp_path / f"{role}.sock")
        child = subprocess.Popen([rust_peer, role, path, *map(str, args)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"ready\n"
        children.append(child)
        return path, child

    yield start
    for child in children:
        child.stdin.close()
        child.stdout.close()
        assert child.wait(timeout=60) == 0, f"the Rust peer failed: {child.args}"


def test_handles_of_every_kind_and_fragments_both_ways(no_leaks, spawn, tmp_path):
    path, _ = spawn("echo")
    ch = Channel.connect(path)
    (tmp_path / "f").write_text("x")
    r, w = os.pipe()
    a, b = Channel.pair()
    region = startup.create(b"shm")
    fds = [
        os.open(tmp_path / "f", os.O_RDONLY | os.O_CLOEXEC),
        os.open(tmp_path / "f", os.O_WRONLY | os.O_CLOEXEC),
        r, w,
        os.eventfd(0, os.EFD_CLOEXEC),
        region,
        a.fileno(),
        os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
    ]
    big = bytes(i * 7 % 251 for i in range(600_000))
    for data, sent in [(b"kinds", fds), (big, [fds[i % len(fds)] for i in range(300)]), (b"", [])]:
        ch.send(data, sent)
        with ch.recv() as report:
            assert report.fds == []
            assert report.bytes.decode() == peer.report(sent).decode()
        with ch.recv() as echoed:
            assert echoed.bytes == data
            assert len(echoed.fds) == len(sent)
            for back, orig in zip(echoed.fds, sent):
                assert (os.fstat(back).st_ino, os.fstat(back).st_dev) == (os.fstat(orig).st_ino, os.fstat(orig).st_dev)
                assert kinds.kind_of(back) == kinds.kind_of(orig)
                assert kinds.access_of(back) == kinds.access_of(orig)
    assert kinds.kind_of(fds[4]) == "event" and kinds.kind_of(fds[5]) == "shared-memory"
    assert kinds.kind_of(fds[6]) == "socket" and kinds.kind_of(fds[7]) == "directory"
    ch.close()
    for fd in fds[:6] + fds[7:]:
        os.close(fd)
    a.close()
    b.close()


def test_random_values_python_encodes_rust_decodes(no_leaks, spawn):
    path, _ = spawn("typed-echo")
    ch = Channel.connect(path)
    rng = shared.Rng(0x5EED)
    for i in range(300):
        value = ("Sample", shared.random_sample(rng))
        data, fds = typed.encode(shared.ENVELOPE, value)
        ch.send(data, fds)
        msg = ch.recv()
        assert typed.decode(shared.ENVELOPE, msg.bytes, msg.take()) == value, f"value {i}"
    # Handles in a value: one, an optional one, a list.
    f = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    data, fds = typed.encode(shared.ENVELOPE, ("Handles", {"label": "l", "file": f, "maybe": f, "many": [f, f, f]}))
    ch.send(data, fds)
    msg = ch.recv()
    name, back = typed.decode(shared.ENVELOPE, msg.bytes, msg.take())
    got = [back["file"], back["maybe"]] + back["many"]
    assert name == "Handles" and back["label"] == "l" and len(set(got)) == 5
    for fd in got:
        assert os.fstat(fd).st_ino == os.fstat(f).st_ino
        os.close(fd)
    os.close(f)
    ch.close()


def test_random_values_rust_encodes_python_decodes(no_leaks, spawn):
    path, _ = spawn("typed-random", 12345, 300)
    ch = Channel.connect(path)
    for _ in range(300):
        msg = ch.recv()
        value = typed.decode(shared.ENVELOPE, msg.bytes, msg.take())
        assert value[0] == "Sample"
        data, fds = typed.encode(shared.ENVELOPE, value)
        assert data == msg.bytes, "re-encoding gives the same bytes"
        ch.send(data, fds)
    ch.close()


def test_a_python_client_calls_a_rust_server(no_leaks, spawn):
    path, _ = spawn("rpc-server")
    peer.rpc_client(path)


def test_a_rust_client_calls_a_python_server(no_leaks, rust_peer, tmp_path):
    path = str(tmp_path / "py.sock")
    listener = Listener(path)
    child = subprocess.Popen([rust_peer, "rpc-client", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # The Rust client makes one connection; serve it to its end here, so
    # every descriptor of it is closed before the count is taken.
    impl = peer.PyFiles()
    server = rpc.Server(shared.FILES, impl)
    server.serve_connection(listener.accept())
    out = child.communicate()[0]
    assert child.returncode == 0, out.decode()
    assert impl.rundowns == ["rusty"], "the Rust client's CLOSE ran its session down once"
    listener.close()


def test_interface_mismatch_names_both_sides(spawn):
    path, _ = spawn("rpc-server")
    other = rpc.Interface("interop.Files", 1, shared.FILES.methods[:1])
    with pytest.raises(rpc.InterfaceMismatch, match="%016x" % shared.FILES.hash):
        rpc.Client.connect(path, other)


def test_a_killed_client_s_contexts_are_run_down(no_leaks, tmp_path):
    """A Python client process opens two sessions and is killed with
    SIGKILL: the server runs both down once the connection ends."""
    path = str(tmp_path / "py.sock")
    listener = Listener(path)
    impl = peer.PyFiles()
    server = rpc.Server(shared.FILES, impl)
    code = shared.IMPORT_PATH + (
        "import os, sys, time\n"
        "sys.path.insert(0, %r)\n"
        "import shared\n"
        "from handoff import rpc\n"
        "c = rpc.Client.connect(%r, shared.FILES)\n"
        "c.call('open_session', 'one'); c.call('open_session', 'two')\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    ) % (os.path.dirname(__file__), path)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    conn = listener.accept()
    t = threading.Thread(target=server.serve_connection, args=(conn,))
    t.start()
    assert child.stdout.readline() == b"ready\n"
    child.kill()
    child.wait()
    child.stdout.close()
    t.join()
    assert sorted(impl.rundowns) == ["one", "two"]
    listener.close()
