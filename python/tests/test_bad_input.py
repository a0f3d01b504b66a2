"""A hostile or broken peer, on the Python side: everything the Rust
receiver refuses, the Python one refuses with an exception that names the
problem, closing every descriptor that arrived (counted in /proc/self/fd)."""

import array
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

import files_server
import shared
from handoff import (
    BadInheritance, BadStartupData, Channel, Disconnected, Listener, Malformed, Poisoned, TooLarge, WrongKind,
    frame, inherited, rpc, startup, typed,
)

FIRST, LAST = frame.FIRST, frame.LAST


def header(flags, here, total_handles, total_bytes, version=1):
    return struct.pack("<BBHIQ", version, flags, here, total_handles, total_bytes)


def raw_send(sock, datagram, nfds=0):
    with open("/dev/null", "rb") as f:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [f.fileno()] * nfds))] if nfds else []
        sock.sendmsg([datagram], anc)


@pytest.fixture
def hostile():
    """A channel whose peer is a raw socket the test writes by hand."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ch = Channel(a)
    yield ch, b
    ch.close()
    b.close()


def assert_usable(ch, raw):
    raw_send(raw, header(FIRST | LAST, 1, 1, 2) + b"ok", 1)
    with ch.recv() as msg:
        assert msg.bytes == b"ok" and len(msg.fds) == 1


@pytest.mark.parametrize("datagram,nfds,words", [
    (bytes([1, 3, 1, 0]), 1, "shorter than the 16-byte header"),
    (header(FIRST | LAST, 0, 0, 0, version=2), 0, "version 2"),
    (header(0x80 | FIRST | LAST, 0, 0, 0), 0, "flags"),
    (header(FIRST | LAST, 2, 2, 0), 1, "announces 2 handles, 1 arrived"),
    (header(FIRST | LAST, 3, 1, 0), 3, "carries 3 handles of a message announced with 1"),
    (header(LAST, 0, 0, 0), 0, "never started"),
    (header(FIRST | LAST, 1, 1, 10) + b"12345", 1, "announced 10 bytes"),
    (header(FIRST | LAST, 0, 0, 2) + b"12345", 0, "more bytes than its message"),
])
def test_malformed_fragments_poison_and_close(hostile, no_leaks, datagram, nfds, words):
    ch, raw = hostile
    raw_send(raw, datagram, nfds)
    with pytest.raises(Malformed, match=words):
        ch.recv()
    assert ch.poisoned
    with pytest.raises(Poisoned):
        ch.recv()
    with pytest.raises(Poisoned):
        ch.send(b"x")


def test_datagrams_over_the_maximum(no_leaks):
    for length, continuation in [(262145, False), (262160, False), (400016, True)]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        ch = Channel(a)
        if continuation:
            raw_send(b, header(FIRST, 0, 1, 1 << 20) + bytes(100))
        flags = LAST if continuation else FIRST | LAST
        total = 1 << 20 if continuation else length - 16
        raw_send(b, header(flags, 1, 1, total) + bytes(length - 16), 1)
        with pytest.raises(Malformed, match="262144"):
            ch.recv()
        ch.close()
        b.close()


def test_exactly_the_maximum_is_accepted(hostile, no_leaks):
    ch, raw = hostile
    raw_send(raw, header(FIRST | LAST, 0, 0, 262144 - 16) + bytes(262144 - 16))
    with ch.recv() as msg:
        assert len(msg.bytes) == 262144 - 16
    assert_usable(ch, raw)


def test_over_the_limits_is_refused_from_the_header_and_skipped(no_leaks):
    a, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ch = Channel(a, max_bytes=1024, max_handles=8)
    # 2^60 bytes announced: refused before anything is allocated; its
    # continuation (with handles) is thrown away; the channel goes on.
    raw_send(raw, header(FIRST, 1, 2, 1 << 60) + b"x", 1)
    raw_send(raw, header(LAST, 1, 2, 1 << 60) + b"y", 1)
    with pytest.raises(TooLarge, match="message bytes"):
        ch.recv()
    raw_send(raw, header(FIRST | LAST, 0, 9, 0), 0)
    with pytest.raises(TooLarge, match="message handles"):
        ch.recv()
    assert not ch.poisoned
    assert_usable(ch, raw)
    ch.close()
    raw.close()


def test_continuation_that_does_not_match(hostile, no_leaks):
    ch, raw = hostile
    raw_send(raw, header(FIRST, 1, 2, 4) + b"ab", 1)
    raw_send(raw, header(LAST, 1, 2, 5) + b"cd", 1)
    with pytest.raises(Malformed, match="does not continue"):
        ch.recv()


def test_empty_datagram_and_end_of_file(no_leaks):
    a, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ch = Channel(a)
    raw.send(b"")
    with pytest.raises(Malformed, match="empty datagram"):
        ch.recv()
    ch.close()
    a, raw = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ch = Channel(a)
    # A message cut off by the peer's exit: its descriptors are closed.
    raw_send(raw, header(FIRST, 1, 2, 4) + b"ab", 1)
    raw.close()
    with pytest.raises(Disconnected):
        ch.recv()
    with pytest.raises(Disconnected):
        ch.send(b"x")
    ch.close()


def test_handles_truncated_by_a_full_descriptor_table(no_leaks):
    """MSG_CTRUNC: run in a child whose descriptor limit is low."""
    code = (
        "import resource, socket, array, os, sys\n"
        "%s"
        "from handoff import Channel, HandlesTruncated, count_open\n"
        "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
        "ch = Channel(a)\n"
        "base = count_open()\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (base + 12, hard))\n"
        "f = os.open('/dev/null', os.O_RDONLY)\n"
        "hdr = bytes([1, 3, 40, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])\n"
        "b.sendmsg([hdr], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [f] * 40))])\n"
        "try:\n"
        "    ch.recv()\n"
        "    sys.exit('no error')\n"
        "except HandlesTruncated as e:\n"
        "    print(e)\n"
        "os.close(f)\n"
        "assert count_open() == base, (count_open(), base)\n"
        "b.sendmsg([bytes([1, 3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]) + b'ok'])\n"
        "assert ch.recv().bytes == b'ok'\n"
    ) % shared.IMPORT_PATH
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert out.returncode == 0, out.stdout.decode()
    assert b"delivered" in out.stdout


# ───────────────────────────── typed values ─────────────────────────────

H = typed.Struct([("a", typed.HANDLE), ("b", typed.HANDLE)])


def fds(n):
    return [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(n)]


@pytest.mark.parametrize("schema,data,n,words", [
    (H, struct.pack("<II", 0, 2), 2, "index 2 out of range"),
    (H, struct.pack("<II", 1, 1), 2, "used twice"),
    (typed.HANDLE, struct.pack("<I", 0), 2, "never referenced"),
    (typed.HANDLE, struct.pack("<I", 0) + b"x", 1, "1 bytes after the value"),
    (typed.STR, struct.pack("<Q", 1 << 60) + b"abc", 1, "length"),
    (typed.Seq(typed.U64), struct.pack("<Q", 1 << 40), 0, "length"),
    (typed.Map(typed.U8, typed.U8), struct.pack("<Q", 3) + b"ab", 0, "length"),
    (typed.BOOL, b"\x02", 0, "bool"),
    (typed.CHAR, b"\xff", 0, "char"),
    (typed.CHAR, b"\xed\xa0\x80", 0, "not UTF-8"),
    (typed.Option(typed.U8), b"\x02\x00", 0, "Option tag"),
    (shared.SHAPE, struct.pack("<I", 3), 0, "variant 3"),
    (typed.STR, struct.pack("<Q", 2) + b"\xff\xfe", 0, "UTF-8"),
    (typed.U32, b"\x01\x02", 0, "more bytes"),
])
def test_bad_typed_payloads_close_every_handle(no_leaks, schema, data, n, words):
    with pytest.raises(Malformed, match=words):
        typed.decode(schema, data, fds(n))


# ───────────────────────────── startup data ─────────────────────────────


def memfd(contents, seal=True):
    fd = os.memfd_create("test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, contents)
    if seal:
        fcntl.fcntl(fd, startup.F_ADD_SEALS, startup.REQUIRED_SEALS)
    return fd


GOOD = startup.header(5) + b"hello"


@pytest.mark.parametrize("make,words", [
    (lambda: memfd(GOOD, seal=False), "not sealed"),
    (lambda: memfd(GOOD + b"more"), "object holds 73"),
    (lambda: memfd(startup.header(50) + b"hello"), "50 payload bytes"),
    (lambda: memfd(b"XNDOFFSD" + GOOD[8:]), "magic"),
    (lambda: memfd(GOOD[:8] + struct.pack("<I", 2) + GOOD[12:]), "version 2"),
    (lambda: memfd(GOOD[:12] + struct.pack("<I", 7) + GOOD[16:]), "format 7"),
    (lambda: memfd(GOOD[:24] + struct.pack("<Q", 128) + GOOD[32:]), "payload_offset 128"),
    (lambda: memfd(GOOD[:40] + b"\x01" + GOOD[41:]), "reserved"),
    (lambda: memfd(GOOD[:30]), "shorter than the 64-byte header"),
])
def test_bad_startup_data_is_refused_and_closed(no_leaks, make, words):
    with pytest.raises(BadStartupData, match=words):
        startup.StartupData(make())


def test_startup_data_that_is_not_shared_memory(no_leaks):
    with pytest.raises(WrongKind, match="expected a handle of kind shared-memory, got other"):
        startup.StartupData(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))


def test_startup_data_cannot_be_resized_or_written(no_leaks):
    fd = startup.create(b"fixed")
    with pytest.raises(OSError):
        os.write(fd, b"x")  # read-only descriptor
    rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    with pytest.raises(PermissionError):
        os.ftruncate(rw, 1)  # F_SEAL_SHRINK
    with pytest.raises(PermissionError):
        os.pwrite(rw, b"X", 64)  # F_SEAL_WRITE
    os.close(rw)
    with startup.StartupData(fd) as data:
        assert data.bytes() == b"fixed"


# ───────────────────────────── inherited descriptors ─────────────────────────────


@pytest.mark.parametrize("fds_,pid,names,words", [
    ("1", "1", None, "LISTEN_PID=1 names another process"),
    ("x", "1", None, "LISTEN_FDS='x' is not"),
    ("1", None, None, "LISTEN_PID is not"),
    ("2", "ME", "a", "1 names for LISTEN_FDS=2"),
    ("99999999", "ME", None, "more than any process"),
])
def test_bad_listen_variables(fds_, pid, names, words):
    me = os.getpid()
    with pytest.raises(BadInheritance, match=words):
        inherited.parse(fds_, str(me) if pid == "ME" else pid, names, me)


def run_child_with(env, pass_fd=False):
    code = (
        "%s"
        "from handoff import Inherited, BadInheritance\n"
        "try:\n"
        "    Inherited.from_env()\n"
        "except BadInheritance as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    ) % shared.IMPORT_PATH
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], env=full, stdout=subprocess.PIPE, close_fds=True)


def test_a_listen_pid_that_is_not_ours_is_refused_by_a_real_child():
    out = run_child_with({"LISTEN_FDS": "1", "LISTEN_PID": str(os.getpid()), "LISTEN_FDNAMES": "x"})
    assert out.returncode == 3 and b"names another process" in out.stdout


def test_an_announced_descriptor_that_is_not_open_is_refused():
    # LISTEN_PID can only name the child itself from inside it: a shell
    # that sets it and then becomes the child with exec.
    code = (
        "import os\n%s"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "try: os.close(3)\n"
        "except OSError: pass\n"
        "from handoff import Inherited, BadInheritance\n"
        "try:\n"
        "    Inherited.from_env()\n"
        "except BadInheritance as e:\n"
        "    print(e); sys.exit(3)\n"
    ) % shared.IMPORT_PATH
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert out.returncode == 3 and b"not open" in out.stdout


# ───────────────────────────── the RPC server ─────────────────────────────


@pytest.fixture
def rpc_conn(tmp_path):
    """A raw channel to a Python interop.Files server, after the handshake."""
    with files_server.raw_connection(tmp_path / "s.sock") as ch:
        ch.send(rpc.frame(rpc.HELLO, 0, 0, 0, rpc._body(rpc.HELLO_BODY, shared.FILES.identity())))
        ch.recv().close()
        yield ch


def call(ch, method, body, fds=(), call_id=5):
    ch.send(rpc.frame(rpc.CALL, method, call_id, len(fds), body), list(fds))
    with ch.recv() as msg:
        h = rpc.Header.decode(msg.bytes, len(msg.fds))
        if h.type == rpc.FAULT:
            return typed.decode(rpc.FAULT_BODY, msg.bytes[rpc.HEADER_LEN:])
        return ("REPLY", msg.bytes[rpc.HEADER_LEN:])


def test_rpc_calls_that_fail_the_checks_get_a_fault_and_the_connection_goes_on(rpc_conn, tmp_path, no_leaks):
    ch = rpc_conn
    f = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    ro = os.open(tmp_path / "f", os.O_RDONLY | os.O_CLOEXEC)
    r, w = os.pipe()
    text = typed.encode(typed.STR, "x")[0]
    u32 = lambda i: struct.pack("<I", i)  # noqa: E731
    assert call(ch, 99, b"") == ("UnknownMethod", {"method": 99})
    # write_file(file, text): a body that does not decode, trailing bytes,
    # an index out of range, a handle no parameter claims.
    assert call(ch, 0, u32(0), [f])[0] == "Malformed"
    assert call(ch, 0, u32(0) + text + b"!", [f])[0] == "Malformed"
    assert call(ch, 0, u32(1) + text, [f])[0] == "Malformed"
    assert call(ch, 0, u32(0) + text, [f, f])[0] == "Malformed"
    # Kind and exact access.
    assert call(ch, 0, u32(0) + text, [w]) == ("WrongKind", {"parameter": "file", "expected": "file", "actual": "pipe"})
    assert call(ch, 0, u32(0) + text, [ro])[0] == "WrongAccess"
    # signal_all: more than the declared maximum of 8.
    assert call(ch, 2, struct.pack("<Q", 9) + b"".join(u32(i) for i in range(9)) + bytes(8), [f] * 9)[0] == "TooManyHandles"
    # log with a token that is not open.
    assert call(ch, 6, struct.pack("<Q", 42) + text) == ("UnknownContext", {"parameter": "session"})
    # CLOSE of an unknown token; then a real context closed with an empty REPLY.
    ch.send(rpc.frame(rpc.CLOSE, 0, 9, 0, struct.pack("<Q", 42)))
    with ch.recv() as msg:
        assert typed.decode(rpc.FAULT_BODY, msg.bytes[rpc.HEADER_LEN:])[0] == "UnknownContext"
    kind, body = call(ch, 5, text)
    token = struct.unpack("<IQ", body)[1]
    ch.send(rpc.frame(rpc.CLOSE, 0, 10, 0, struct.pack("<Q", token)))
    with ch.recv() as msg:
        assert msg.bytes == rpc.frame(rpc.REPLY, 0, 10, 0)
    # Still serving.
    assert call(ch, 0, u32(0) + text, [f]) == ("REPLY", bytes(4) + struct.pack("<Q", 1))
    for fd in (f, ro, r, w):
        os.close(fd)


def test_rpc_frames_that_break_the_rules_close_the_connection(tmp_path, no_leaks):
    for first in [rpc.frame(rpc.CALL, 0, 1, 0), rpc.frame(rpc.WELCOME, 0, 0, 0), b"\x01\x01"]:
        with files_server.raw_connection(tmp_path / "s.sock") as ch:
            ch.send(first)
            with ch.recv() as msg:
                h = rpc.Header.decode(msg.bytes, 0)
                assert (h.type, h.call_id) == (rpc.FAULT, 0)
                assert typed.decode(rpc.FAULT_BODY, msg.bytes[rpc.HEADER_LEN:])[0] == "Malformed"
            with pytest.raises(Disconnected):
                ch.recv()


def test_random_bytes_never_escape_as_anything_but_malformed(no_leaks):
    """Mutated encodings of random values into the decoders: a value or
    Malformed, nothing else, and every descriptor closed either way."""
    rng = shared.Rng(0xF022)
    for i in range(2000):
        data = bytearray(typed.encode(shared.ENVELOPE, ("Sample", shared.random_sample(rng)))[0])
        for _ in range(1 + rng.below(4)):
            pos = rng.below(len(data))
            op = rng.below(3)
            if op == 0:
                data[pos] = rng.below(256)
            elif op == 1:
                del data[pos:pos + 1 + rng.below(8)]
            else:
                data[pos:pos] = bytes([0xFF] * (1 + rng.below(8)))
        handles = fds(rng.below(3))
        try:
            value = typed.decode(shared.ENVELOPE, bytes(data), handles)
            for fd in handles:  # decoded: the value owns them
                os.close(fd)
        except Malformed:
            pass
        try:
            rpc.Header.decode(bytes(data[:40]), rng.below(2))
        except Malformed:
            pass


def test_a_client_stops_using_a_connection_that_sent_an_unparsable_reply(tmp_path, no_leaks):
    """A fake server answers with a REPLY carrying a handle no result
    claims: Malformed, the handle closed, and later calls refused."""
    path = tmp_path / "fake.sock"
    listener = Listener(path)

    def fake():
        ch = listener.accept()
        with ch.recv():
            pass
        welcome = dict(shared.FILES.identity(), accepted=True, max_bytes=1 << 20, max_handles=8, max_in_flight=1)
        ch.send(rpc.frame(rpc.WELCOME, 0, 0, 0, rpc._body(rpc.WELCOME_BODY, welcome)))
        with ch.recv():
            pass
        body = typed.encode(typed.Result(typed.U32, typed.STR), ("Ok", 1))[0]
        with open("/dev/null", "rb") as f:
            ch.send(rpc.frame(rpc.REPLY, 0, 1, 1, body), [f.fileno()])
        try:
            ch.recv().close()
        except Disconnected:
            pass
        ch.close()

    t = threading.Thread(target=fake)
    t.start()
    client = rpc.Client.connect(path, shared.FILES)
    with pytest.raises(Malformed, match="no result claims"):
        client.call("refuse", "x")
    with pytest.raises(Malformed, match="no longer used"):
        client.call("refuse", "x")
    client.close()
    t.join()
    listener.close()


def test_a_channel_from_something_that_is_not_a_seqpacket_socket(no_leaks):
    with pytest.raises(WrongKind, match="got other"):
        Channel.from_fd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(WrongKind, match="seqpacket"):
        Channel(a)
    b.close()


def test_a_child_claims_what_it_inherited_and_checks_it(tmp_path, no_leaks):
    """The convention end to end with a real child: descriptors 3 and 4,
    LISTEN_PID set in the child itself before exec (as systemd does), a
    read-only file and startup data; then a kind the child did not expect."""
    (tmp_path / "app.toml").write_text("port = 1")
    f = os.open(tmp_path / "app.toml", os.O_RDONLY | os.O_CLOEXEC)
    data = startup.create(b"startup bytes")
    hi = [fcntl.fcntl(x, fcntl.F_DUPFD_CLOEXEC, 100) for x in (f, data)]

    def place():  # in the child, before exec
        os.dup2(hi[0], 3)
        os.dup2(hi[1], 4)
        os.environ.update(LISTEN_FDS="2", LISTEN_PID=str(os.getpid()),
                          LISTEN_FDNAMES="config:handoff.startup")

    def run_child(code):  # with descriptors 3 and 4 placed; its output
        return subprocess.run([sys.executable, "-c", shared.IMPORT_PATH + code], preexec_fn=place,
                              pass_fds=(3, 4), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    out = run_child(
        "import os\n"
        "from handoff import Inherited, WrongAccess\n"
        "inh = Inherited.from_env()\n"
        "assert 'LISTEN_FDS' not in os.environ\n"
        "cfg = inh.take('config', 'file', 'read')\n"
        "print(os.read(cfg, 100).decode(), inh.startup_data().bytes().decode(), sep='|')\n"
    )
    assert out.returncode == 0, out.stdout.decode()
    assert out.stdout.decode().strip() == "port = 1|startup bytes"

    out = run_child(
        "from handoff import Inherited, WrongAccess\n"
        "try:\n"
        "    Inherited.from_env().take('config', 'file', 'write')\n"
        "except WrongAccess as e:\n"
        "    print(e)\n"
    )
    assert b"inherited 'config': expected write access, got read" in out.stdout, out.stdout
    for x in [f, data] + hi:
        os.close(x)
