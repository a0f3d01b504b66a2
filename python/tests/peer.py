"""The Python side of handoff/tests/python_interop.rs: one role per run,
talking to the Rust test that spawned it. Exits 0 only if every check held
and this process's open-descriptor count is back where it started.

    peer.py child            inherited `config` (a read-only file), startup
                             data and a channel: reports them on the channel
    peer.py echo             inherited channel: for each message, a report of
                             its descriptors (kind, access), then the message
    peer.py typed-echo       inherited channel: decodes each Envelope and
                             sends it back re-encoded
    peer.py rpc-server PATH  serves interop.Files at PATH until stdin closes
    peer.py rpc-client PATH  calls every method of interop.Files at PATH
"""

import os
import sys
import tempfile

import shared
from handoff import Disconnected, Inherited, StartupData, count_open, kinds, rpc, startup, typed
from handoff.rpc import ApplicationError, Fault, OpenContext

BASELINE = None


def check(what, ok):
    if not ok:
        raise AssertionError(f"check failed: {what}")


def report(fds):
    return "".join(f"{kinds.kind_of(fd)} {kinds.access_of(fd)}\n" for fd in fds).encode()


def child():
    inherited = Inherited.from_env()
    config = inherited.take("config", "file", "read")
    data = inherited.startup_data()
    ch = inherited.channel()
    described = report([config]).strip()
    with open(config, "rb") as f:  # closes the descriptor
        contents = f.read()
    text = b"config=" + contents + b";" + described + b";startup=" + data.bytes()
    data.close()
    ch.send(text)
    try:
        ch.recv().close()
    except Disconnected:
        pass
    ch.close()


def answer_each(answer):
    """Calls answer(ch, msg) for each message on the inherited channel until
    the parent hangs up, then checks every descriptor was closed."""
    ch = Inherited.from_env().channel()
    base = count_open()
    while True:
        try:
            msg = ch.recv()
        except Disconnected:
            break
        answer(ch, msg)
    check("descriptors closed", count_open() == base)
    ch.close()


def echo():
    def answer(ch, msg):
        with msg:
            ch.send(report(msg.fds))
            ch.send(msg.bytes, msg.fds)

    answer_each(answer)


def typed_echo():
    def answer(ch, msg):
        value = typed.decode(shared.ENVELOPE, msg.bytes, msg.take())
        data, fds = typed.encode(shared.ENVELOPE, value)
        try:
            ch.send(data, fds)
        finally:
            if value[0] == "Handles":
                v = value[1]
                for fd in [v["file"]] + ([v["maybe"]] if v["maybe"] is not None else []) + v["many"]:
                    os.close(fd)

    answer_each(answer)


class PyFiles:
    """interop.Files in Python: the same behaviour as service.rs."""

    def __init__(self):
        self.rundowns = []

    def _rundown(self, session):
        self.rundowns.append(session["name"])

    def write_file(self, fd, text):
        data = text.encode()
        os.write(fd, data)
        return len(data)

    def read_pipe(self, fd):
        if fd is None:
            return None
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                return b"".join(chunks).decode()
            chunks.append(b)

    def signal_all(self, fds, add):
        for fd in fds:
            os.write(fd, add.to_bytes(8, sys.byteorder))
        return len(fds)

    def region(self, text):
        return startup.create(text.encode())

    def events(self, count):
        return [os.eventfd(i + 1, os.EFD_CLOEXEC) for i in range(count)]

    def open_session(self, name):
        return OpenContext({"name": name, "lines": []}, self._rundown)

    def log(self, session, line):
        session["lines"].append(line)
        return (session["name"], len(session["lines"]))

    def refuse(self, text):
        raise ApplicationError(text)


def rpc_server(path):
    listener = rpc.serve_path(path, shared.FILES, PyFiles())
    print("ready", flush=True)
    sys.stdin.read()
    listener.close()


def rpc_client(path):
    base = count_open()
    with rpc.Client.connect(path, shared.FILES) as c, tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "out.txt")
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        check("write_file", c.call("write_file", fd, "from python") == 11)
        os.close(fd)
        with open(p) as f:
            check("write_file contents", f.read() == "from python")

        r, w = os.pipe()
        os.write(w, b"piped")
        os.close(w)
        check("read_pipe some", c.call("read_pipe", r) == "piped")
        os.close(r)
        check("read_pipe none", c.call("read_pipe", None) is None)

        evs = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(3)]
        check("signal_all", c.call("signal_all", evs, 7) == 3)
        for e in evs:
            check("counter", int.from_bytes(os.read(e, 8), sys.byteorder) == 7)
            os.close(e)

        region = c.call("region", "shared text")
        check("region kind", kinds.kind_of(region) == "shared-memory")
        with StartupData(region) as data:
            check("region contents", data.bytes() == b"shared text")

        got = c.call("events", 4)
        check("events count", len(got) == 4)
        for i, e in enumerate(got):
            check("events kind", kinds.kind_of(e) == "event")
            check("events counter", int.from_bytes(os.read(e, 8), sys.byteorder) == i + 1)
            os.close(e)

        session = c.call("open_session", "snake")
        check("log 1", c.call("log", session, "a") == ("snake", 1))
        check("log 2", c.call("log", session, "b") == ("snake", 2))
        c.close_context(session)
        try:
            c.call("log", session, "c")
            check("closed context refused", False)
        except Fault as f:
            check("closed context fault", f.name == "UnknownContext")

        try:
            c.call("refuse", "no way")
            check("refuse raises", False)
        except ApplicationError as e:
            check("refuse value", e.value == "no way")

        r2, w2 = os.pipe()
        os.set_blocking(w2, True)
        try:
            c.call("write_file", w2, "x")
            check("a pipe for a file is refused", False)
        except Fault as f:
            check("WrongKind fault", f.name == "WrongKind" and f.fields["parameter"] == "file")
        os.close(r2)
        os.close(w2)
    check("descriptors closed", count_open() == base)


def main():
    role = sys.argv[1]
    base = count_open()
    if role == "child":
        child()
        base -= 3  # the inherited config, startup data and channel: all closed now
    elif role == "echo":
        echo()
        base -= 1
    elif role == "typed-echo":
        typed_echo()
        base -= 1
    elif role == "rpc-server":
        rpc_server(sys.argv[2])
    elif role == "rpc-client":
        rpc_client(sys.argv[2])
    else:
        sys.exit(f"unknown role {role!r}")
    if role != "rpc-server":
        now = count_open()
        check(f"open descriptors back to {base} (now {now})", now == base)


if __name__ == "__main__":
    main()
