"""The golden vectors of docs/wire-vectors.json, shared with
handoff/tests/python_interop.rs."""

import json
import os
import socket

import pytest

import files_server
import shared
from handoff import Channel, frame, rpc, startup, typed

with open(shared.VECTORS, encoding="utf-8") as f:
    V = json.load(f)


def test_fragment_header():
    h = V["fragment_header"]
    header = frame.Header(h["flags"], h["handles_here"], h["total_handles"], h["total_bytes"])
    assert header.encode().hex() == h["hex"]
    assert frame.Header.decode(bytes.fromhex(h["hex"])) == header


def test_a_real_one_fragment_message(no_leaks):
    m = V["one_fragment_message"]
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ch = Channel(a)
    with open("/dev/null", "rb") as f:
        ch.send(bytes.fromhex(m["payload"]), [f.fileno()] * m["handles"])
    data, fds, _, _ = socket.recv_fds(b, 1024, 8)
    assert data.hex() == m["datagram"] and len(fds) == m["handles"]
    for fd in fds:
        os.close(fd)
    ch.close()
    b.close()


def test_startup_header(no_leaks):
    s = V["startup_header"]
    fd = startup.create(bytes.fromhex(s["payload"]), s["format"])
    assert os.pread(fd, 64, 0).hex() == s["hex"]
    with startup.StartupData(fd) as data:
        assert data.bytes().hex() == s["payload"]


def typed_vector(name):
    return next(e for e in V["typed"] if e["name"] == name)


def test_typed_sample():
    e = typed_vector("sample")
    value = ("Sample", shared.SAMPLE_VECTOR)
    data, fds = typed.encode(shared.ENVELOPE, value)
    assert data.hex() == e["hex"] and fds == []
    assert typed.decode(shared.ENVELOPE, bytes.fromhex(e["hex"])) == value


def test_typed_with_handles(no_leaks):
    e = typed_vector("with_handles")
    fds = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(4)]
    value = ("Handles", {"label": "h", "file": fds[0], "maybe": fds[1], "many": fds[2:]})
    data, order = typed.encode(shared.ENVELOPE, value)
    assert data.hex() == e["hex"] and order == fds and len(order) == e["handles"]
    back = typed.decode(shared.ENVELOPE, data, fds)
    assert back == value  # decode owns them now; they are the same numbers
    for fd in fds:
        os.close(fd)
    e = typed_vector("with_handles_none")
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    data, _ = typed.encode(shared.ENVELOPE, ("Handles", {"label": "", "file": fd, "maybe": None, "many": []}))
    assert data.hex() == e["hex"]
    os.close(fd)


@pytest.mark.parametrize("name,char", [("char_7f", "\x7f"), ("char_80", "\x80"), ("char_20ac", "€"),
                                       ("char_10ffff", "\U0010ffff")])
def test_chars(name, char):
    assert typed.encode(typed.CHAR, char)[0].hex() == typed_vector(name)["hex"]
    assert typed.decode(typed.CHAR, bytes.fromhex(typed_vector(name)["hex"])) == char


def test_fixed_array():
    assert typed.encode(typed.Array(typed.U16, 3), (1, 2, 3))[0].hex() == typed_vector("array_u16_3")["hex"]


def test_interface_hash():
    files, empty, readme = V["interface_hash"]
    # README.md's example, declared as it is there.
    logs = rpc.Interface("app.Logs", 1, [
        rpc.Method("append_to",
                   [("log", rpc.HandleParam("file", "write")), ("line", rpc.Value(typed.STR, "String"))],
                   rpc.Value(typed.U64, "u64"), error=rpc.Value(typed.STR, "String")),
    ])
    assert (logs.canonical_text, "%016x" % logs.hash) == (readme["canonical"], readme["hash"])
    assert shared.FILES.canonical_text == files["canonical"]
    assert "%016x" % shared.FILES.hash == files["hash"]
    assert "%016x" % rpc.fnv1a64(empty["canonical"].encode()) == empty["hash"]


def test_the_spec_examples():
    # docs/wire-format.md: HELLO for Demo v1, hash 0x0102030405060708.
    hello = rpc.frame(rpc.HELLO, 0, 0, 0, rpc._body(rpc.HELLO_BODY, {"name": "Demo", "version": 1, "hash": 0x0102030405060708}))
    assert hello.hex() == (
        "0101000000000000" "0000000000000000" "0000000018000000" "0400000000000000"
        "44656d6f01000000" "0807060504030201"
    )
    call = rpc.frame(rpc.CALL, 2, 7, 1, typed.encode(typed.Tuple(typed.U32, typed.STR), (0, "hi"))[0])
    assert call.hex() == (
        "0103000002000000" "0700000000000000" "010000000e000000" "0000000002000000" "000000006869"
    )
    assert typed.encode(typed.Result(typed.U64, typed.STR), ("Ok", 5))[0].hex() == "000000000500000000000000"
    assert typed.encode(rpc.FAULT_BODY, ("UnknownMethod", {"method": 9}))[0].hex() == "0100000009000000"


def test_python_server_answers_byte_for_byte(tmp_path, no_leaks):
    """The same frames the Rust test sends to a Rust server get the same
    bytes back from the Python server."""
    r = V["rpc"]
    with files_server.raw_connection(tmp_path / "py.sock") as ch:
        for send, expect in [("hello", "welcome"), ("call_refuse_no", "reply_err_no"),
                             ("close_unknown_5", "fault_unknown_context")]:
            ch.send(bytes.fromhex(r[send]))
            with ch.recv() as got:
                assert got.bytes.hex() == r[expect], send


def test_python_server_faults_the_shared_bad_calls(tmp_path, no_leaks):
    r = V["rpc"]
    with files_server.raw_connection(tmp_path / "py.sock") as ch:
        ch.send(bytes.fromhex(r["hello"]))
        ch.recv().close()
        for bad in r["bad_calls"]:
            ch.send(bytes.fromhex(bad["call"]))
            with ch.recv() as got:
                h = rpc.Header.decode(got.bytes, 0)
                assert (h.type, h.call_id) == (rpc.FAULT, rpc.Header.decode(bytes.fromhex(bad["call"]), 0).call_id)
                assert typed.decode(rpc.FAULT_BODY, got.bytes[rpc.HEADER_LEN:])[0] == bad["fault"], bad["what"]
                if bad["reply"]:
                    assert got.bytes.hex() == bad["reply"], bad["what"]
