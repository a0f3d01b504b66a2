"""RPC over a channel: HELLO/WELCOME, CALL/REPLY/FAULT/CLOSE frames with
handle parameters and context handles (docs/wire-format.md, "RPC").

An interface is declared as the Rust trait is, method by method, in order:

    FILES = Interface("interop.Files", 1, [
        Method("write_file",
               [("file", HandleParam("file", "write")), ("text", Value(STR, "String"))],
               Value(U64, "u64"), error=Value(STR, "Failure")),
        ...
    ])

`Value(schema, type_text)` is a plain value: `schema` encodes it, and
`type_text` is the Rust type as written in the trait, whitespace removed,
which only enters the interface hash. `HandleParam(kind, access, shape,
max)`, `Context()` and, for results, `Out(kind, access, shape, max)` and
`NewContext()` mirror `#[handle(...)]`, `#[context]`, `#[out(...)]` and
`Context<T>`.
"""

import os
import struct
import threading
import traceback

from . import kinds, typed
from ._fd import Closing, close_all
from .channel import Channel, Listener
from .errors import Disconnected, HandoffError, Malformed, TooLarge, WrongAccess, WrongKind
from .typed import BOOL, STR, U32, U64, Enum, Reader, Struct, Tuple

VERSION = 1
HEADER_LEN = 24
HELLO, WELCOME, CALL, REPLY, FAULT, CLOSE = range(1, 7)
_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", CALL: "CALL", REPLY: "REPLY", FAULT: "FAULT", CLOSE: "CLOSE"}
_HEADER = struct.Struct("<BBHIQII")

HELLO_BODY = Struct([("name", STR), ("version", U32), ("hash", U64)])
WELCOME_BODY = Struct([
    ("accepted", BOOL), ("name", STR), ("version", U32), ("hash", U64),
    ("max_bytes", U64), ("max_handles", U32), ("max_in_flight", U32),
])
FAULT_BODY = Enum([
    ("Malformed", Struct([("detail", STR)])),
    ("UnknownMethod", Struct([("method", U32)])),
    ("WrongKind", Struct([("parameter", STR), ("expected", STR), ("actual", STR)])),
    ("WrongAccess", Struct([("parameter", STR), ("expected", STR), ("actual", STR)])),
    ("TooManyHandles", Struct([("parameter", STR), ("max", U32), ("got", U32)])),
    ("UnknownContext", Struct([("parameter", STR)])),
    ("TooLarge", Struct([("what", STR), ("got", U64), ("limit", U64)])),
    ("Busy", Struct([("limit", U32)])),
    ("BadResult", Struct([("detail", STR)])),
    ("Panicked", None),
])


# ───────────────────────────── errors ─────────────────────────────


class Fault(HandoffError):
    """The server refused or failed a call: `name` is the FAULT variant,
    `fields` its fields as a dict."""

    def __init__(self, name, fields):
        super().__init__(f"the server refused the call: {name} {fields or ''}".rstrip())
        self.name, self.fields = name, fields or {}


class ApplicationError(HandoffError):
    """The method ran and returned its error `value` (raise it in a server
    method to return one)."""

    def __init__(self, value):
        super().__init__(f"the method returned an error: {value!r}")
        self.value = value


class InterfaceMismatch(HandoffError):
    def __init__(self, ours, theirs):
        super().__init__(f"interface mismatch: this side is {ours}, the server is {theirs}")
        self.ours, self.theirs = ours, theirs


# ───────────────────────────── frames ─────────────────────────────


class Header:
    __slots__ = ("type", "method", "call_id", "handles", "body_len")

    def __init__(self, type, method, call_id, handles, body_len):
        self.type, self.method, self.call_id, self.handles, self.body_len = type, method, call_id, handles, body_len

    @classmethod
    def decode(cls, data, handles_arrived):
        def bad(m):
            return Malformed("rpc frame: " + m)

        if len(data) < HEADER_LEN:
            raise bad(f"{len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
        version, ty, flags, method, call_id, handles, body_len = _HEADER.unpack_from(data)
        if version != VERSION:
            raise bad(f"version {version}, this side speaks {VERSION}")
        if ty not in _NAMES:
            raise bad(f"unknown frame type {ty}")
        if flags:
            raise bad(f"flags {flags:#06x}, none are defined")
        if handles != handles_arrived:
            raise bad(f"header announces {handles} handles, {handles_arrived} arrived")
        if body_len != len(data) - HEADER_LEN:
            raise bad(f"header announces {body_len} body bytes, {len(data) - HEADER_LEN} arrived")
        if ty in (CALL, REPLY, CLOSE) and call_id == 0:
            raise bad("call id 0 is reserved for the connection")
        if ty != CALL and method:
            raise bad(f"method {method} in a frame that is not a call")
        return cls(ty, method, call_id, handles, body_len)


def frame(ty, method, call_id, handles, body=b""):
    """The bytes of one frame: the 24-byte header, then `body`."""
    return _HEADER.pack(VERSION, ty, 0, method, call_id, handles, len(body)) + bytes(body)


def _body(schema, value):
    data, fds = typed.encode(schema, value)
    assert not fds
    return data


# ───────────────────────────── declarations ─────────────────────────────


class Value:
    def __init__(self, schema, type_text):
        self.schema = schema
        self.type_text = "".join(type_text.split())


class HandleParam:
    """A handle parameter: `shape` is "one", "optional" or "many"."""

    def __init__(self, kind="any", access=None, shape="one", max=None):
        assert kind in kinds.KINDS + ("any",) and shape in ("one", "optional", "many")
        assert access in (None, "read", "write", "read_write")
        self.kind, self.access, self.shape = kind, access, shape
        self.max = max if shape == "many" and max is not None else 1
        self._declared_max = max

    def decl(self):
        return f"{self.kind},{self.access or 'as-is'},{self._declared_max or 1}"


class Out(HandleParam):
    """Returned handles (`#[out(...)]`)."""


class Context:
    """A context parameter (`#[context]`): the state of a token."""


class NewContext:
    """A result that opens a context (`Result<Context<T>, E>`)."""


def _role(part, handles, word):
    """How the canonical text names a parameter or result: a value by its
    type, handles (a `handles` instance) as word[decl]shape, else a context."""
    if isinstance(part, Value):
        return "value:" + part.type_text
    if isinstance(part, handles):
        return f"{word}[{part.decl()}]{part.shape}"
    return "context"


class Method:
    def __init__(self, name, params, result, error):
        self.name, self.params, self.result, self.error = name, list(params), result, error

    def canonical_line(self):
        parts = [f"{pname}:{_role(p, HandleParam, 'handle')};" for pname, p in self.params]
        out = _role(self.result, Out, "out")
        return f"{self.name}({''.join(parts)})->{out}|{self.error.type_text}\n"


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class Interface:
    def __init__(self, name, version, methods):
        self.name, self.version, self.methods = name, version, list(methods)
        self.by_name = {m.name: (i, m) for i, m in enumerate(self.methods)}
        self.canonical_text = "".join(m.canonical_line() for m in self.methods)
        self.hash = fnv1a64(self.canonical_text.encode("utf-8"))

    def identity(self):
        return {"name": self.name, "version": self.version, "hash": self.hash}

    def __str__(self):
        return f"{self.name} v{self.version} (signature hash {self.hash:016x})"


def _ident_text(d):
    return f"{d['name']} v{d['version']} (signature hash {d['hash']:016x})"


class ContextToken:
    """A client's handle to state on the server."""

    def __init__(self, token):
        self.token = token

    def __repr__(self):
        return f"ContextToken({self.token:#x})"


class OpenContext:
    """What a server method returns to open a context: the state, and an
    optional `rundown(state)` run once when it closes."""

    def __init__(self, state, rundown=None):
        self.state, self.rundown = state, rundown


def _items(shape, value):
    """The descriptors of a handle parameter or result of `shape`."""
    if shape == "one":
        return [value]
    if shape == "optional":
        return [] if value is None else [value]
    return [] if value is None else list(value)


def _check_handle(fd, decl, what):
    kinds.check(fd, decl.kind, decl.access, what=what)


# ───────────────────────────── client ─────────────────────────────


class Client(Closing):
    """A blocking client: one call at a time."""

    def __init__(self, channel, interface):
        self.channel, self.interface = channel, interface
        self._next_id = 1
        self._broken = None
        self.channel.send(frame(HELLO, 0, 0, 0, _body(HELLO_BODY, interface.identity())))
        msg = self.channel.recv()
        with msg:
            h = Header.decode(msg.bytes, len(msg.fds))
            if h.type != WELCOME:
                raise Malformed(f"rpc handshake: expected WELCOME, got {_NAMES[h.type]}")
            w = typed.decode(WELCOME_BODY, msg.bytes[HEADER_LEN:])
        if not w["accepted"]:
            self.channel.close()
            raise InterfaceMismatch(str(interface), _ident_text(w))
        self.server = w
        self.max_bytes, self.max_handles = w["max_bytes"], w["max_handles"]

    @classmethod
    def connect(cls, path, interface):
        ch = Channel.connect(path)
        try:
            return cls(ch, interface)
        except BaseException:
            ch.close()
            raise

    def close(self):
        self.channel.close()

    def _id(self):
        i = self._next_id
        self._next_id += 1
        return i

    def _usable(self):
        if self._broken is not None:
            raise Malformed(f"this connection is no longer used: {self._broken}")

    def _receive(self, call_id):
        """The next frame, checked; a frame that cannot be parsed stops the
        connection for every later call too (docs/wire-format.md)."""
        try:
            msg = self.channel.recv()
            h = Header.decode(msg.bytes, len(msg.fds))
        except Malformed as e:
            if "msg" in locals():
                msg.close()
            self._broken = str(e)
            raise
        if h.call_id not in (call_id, 0) or h.type not in (REPLY, FAULT):
            msg.close()
            self._broken = f"expected the answer to call {call_id}, got {_NAMES[h.type]} for {h.call_id}"
            raise Malformed(self._broken)
        return msg, h

    def call(self, name, *args):
        self._usable()
        index, m = self.interface.by_name[name]
        if len(args) != len(m.params):
            raise TypeError(f"{name} takes {len(m.params)} arguments")
        out = bytearray()
        fds, owned = [], []
        try:
            for (pname, p), arg in zip(m.params, args):
                if isinstance(p, Value):
                    p.schema.enc(out, arg, [])
                elif isinstance(p, Context):
                    U64.enc(out, arg.token, [])
                else:
                    items = _items(p.shape, arg)
                    if p.shape == "many":
                        if len(items) > p.max:
                            raise TooLarge(f"parameter `{pname}` handles", len(items), p.max)
                        U64.enc(out, len(items), [])
                    elif p.shape == "optional":
                        out.append(0 if arg is None else 1)
                    for item in items:
                        fd = item if isinstance(item, int) else item.fileno()
                        if p.access is not None:
                            have = kinds.access_of(fd)
                            if have != p.access:
                                if have != "read_write" or kinds.kind_of(fd) not in ("file", "shared-memory"):
                                    raise WrongAccess(f"parameter `{pname}`", p.access, have)
                                fd = kinds.restrict(fd, p.access)
                                owned.append(fd)
                        U32.enc(out, len(fds), [])
                        fds.append(fd)
            call_id = self._id()
            data = frame(CALL, index, call_id, len(fds), out)
            if len(data) > self.max_bytes:
                raise TooLarge("call bytes (the server's limit)", len(data), self.max_bytes)
            if len(fds) > self.max_handles:
                raise TooLarge("call handles (the server's limit)", len(fds), self.max_handles)
            self.channel.send(data, fds)
        finally:
            close_all(owned)
        return self._reply(call_id, m)

    def close_context(self, ctx):
        self._usable()
        call_id = self._id()
        self.channel.send(frame(CLOSE, 0, call_id, 0, _body(U64, ctx.token)))
        msg, h = self._receive(call_id)
        with msg:
            if h.type == FAULT:
                name, fields = typed.decode(FAULT_BODY, msg.bytes[HEADER_LEN:])
                raise Fault(name, fields)
            if h.type != REPLY or h.body_len != 0 or h.handles != 0:
                raise Malformed("the reply to CLOSE must be an empty REPLY")

    def _reply(self, call_id, m):
        msg, h = self._receive(call_id)
        with msg:
            if h.type == REPLY and h.call_id == 0:
                self._broken = "a REPLY with call id 0"
                raise Malformed(self._broken)
            body = msg.bytes[HEADER_LEN:]
            if h.type == FAULT:
                name, fields = typed.decode(FAULT_BODY, body)
                if h.call_id == 0:
                    self._broken = f"the server faulted the connection: {name} {fields}"
                raise Fault(name, fields)
            r = Reader(body, msg.take())
            try:
                tag = U32.dec(r)
                if tag == 1:
                    value = m.error.schema.dec(r)
                    err = True
                elif tag == 0:
                    err = False
                    res = m.result
                    if isinstance(res, Value):
                        value = res.schema.dec(r)
                    elif isinstance(res, NewContext):
                        value = ContextToken(U64.dec(r))
                    else:
                        if res.shape == "one":
                            value = r.claim(U32.dec(r))
                            got = [value]
                        elif res.shape == "optional":
                            value = typed.Option(typed.HANDLE).dec(r)
                            got = [] if value is None else [value]
                        else:
                            n = r.length(4)
                            if n > res.max:
                                raise TooLarge("returned handles", n, res.max)
                            value = [r.claim(U32.dec(r)) for _ in range(n)]
                            got = value
                        for fd in got:
                            _check_handle(fd, res, f"result of {m.name}")
                else:
                    raise Malformed(f"Result variant {tag}")
                if r.pos != len(r.data):
                    raise Malformed(f"{len(r.data) - r.pos} bytes after the result")
                if not all(r.claimed):
                    raise Malformed("the reply carries a handle no result claims")
            except Malformed as e:
                close_all(r.fds)
                self._broken = str(e)
                raise
            except BaseException:
                close_all(r.fds)
                raise
        if err:
            raise ApplicationError(value)
        return value


# ───────────────────────────── server ─────────────────────────────


class _CallFault(Exception):
    def __init__(self, name, **fields):
        self.name, self.fields = name, fields


class Server:
    """Serves `implementation` (an object with a method per interface
    method, by name) on every connection, one thread per connection and one
    call at a time on each. Handle parameters arrive as descriptors the
    runtime closes after the call; returned descriptors are closed once
    sent."""

    def __init__(self, interface, implementation, max_bytes=16 << 20, max_handles=1024, max_in_flight=64):
        self.interface, self.impl = interface, implementation
        self.max_bytes, self.max_handles, self.max_in_flight = max_bytes, max_handles, max_in_flight

    def serve(self, listener):
        """Accepts connections until the listener is closed."""
        while True:
            try:
                ch = listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve_connection, args=(ch,), daemon=True).start()

    def serve_connection(self, channel):
        ch = channel
        ch.max_bytes, ch.max_handles = self.max_bytes, self.max_handles
        contexts = {}
        try:
            if self._handshake(ch):
                self._loop(ch, contexts)
        except (Disconnected, OSError):
            pass
        finally:
            for state, rundown in contexts.values():
                if rundown is not None:
                    rundown(state)
            ch.close()

    def _fault(self, ch, call_id, name, **fields):
        ch.send(frame(FAULT, 0, call_id, 0, _body(FAULT_BODY, (name, fields if name != "Panicked" else None))))

    def _handshake(self, ch):
        ours = self.interface.identity()
        try:
            msg = ch.recv()
        except (Malformed, TooLarge, HandoffError):
            return False  # a channel-level failure: close without a FAULT
        with msg:
            try:
                h = Header.decode(msg.bytes, len(msg.fds))
                if h.type != HELLO:
                    raise Malformed(f"rpc handshake: expected HELLO, got {_NAMES[h.type]}")
                hello = typed.decode(HELLO_BODY, msg.bytes[HEADER_LEN:])
            except Malformed as e:
                self._fault(ch, 0, "Malformed", detail=str(e))
                return False
        accepted = hello == ours
        welcome = dict(ours, accepted=accepted, max_bytes=self.max_bytes,
                       max_handles=self.max_handles, max_in_flight=self.max_in_flight)
        ch.send(frame(WELCOME, 0, 0, 0, _body(WELCOME_BODY, welcome)))
        return accepted

    def _loop(self, ch, contexts):
        while True:
            try:
                msg = ch.recv()
            except TooLarge as e:
                self._fault(ch, 0, "TooLarge", what=e.what, got=e.got, limit=e.limit)
                return
            except Malformed:
                return  # a channel-level violation: the connection closes
            with msg:
                try:
                    h = Header.decode(msg.bytes, len(msg.fds))
                    if h.type not in (CALL, CLOSE):
                        raise Malformed(f"rpc: a client sent a {_NAMES[h.type]} frame after the handshake")
                except Malformed as e:
                    self._fault(ch, 0, "Malformed", detail=str(e))
                    return
                if h.type == CLOSE:
                    self._close(ch, h, msg, contexts)
                else:
                    self._call(ch, h, msg, contexts)

    def _close(self, ch, h, msg, contexts):
        try:
            token = typed.decode(U64, msg.bytes[HEADER_LEN:])
        except Malformed as e:
            return self._fault(ch, h.call_id, "Malformed", detail=str(e))
        entry = contexts.pop(token, None)
        if entry is None:
            return self._fault(ch, h.call_id, "UnknownContext", parameter="context")
        state, rundown = entry
        if rundown is not None:
            rundown(state)
        ch.send(frame(REPLY, 0, h.call_id, 0))

    def _call(self, ch, h, msg, contexts):
        if h.method >= len(self.interface.methods):
            return self._fault(ch, h.call_id, "UnknownMethod", method=h.method)
        m = self.interface.methods[h.method]
        r = Reader(msg.bytes[HEADER_LEN:], msg.take())
        try:
            args = self._arguments(m, r, contexts)
        except _CallFault as f:
            close_all(r.fds)
            return self._fault(ch, h.call_id, f.name, **f.fields)
        except (Malformed, HandoffError, ValueError) as e:
            close_all(r.fds)
            return self._fault(ch, h.call_id, "Malformed", detail=str(e))
        try:
            try:
                result = getattr(self.impl, m.name)(*args)
                ok = True
            except ApplicationError as e:
                result, ok = e.value, False
            except Exception:  # the method failed: as a Rust panic
                traceback.print_exc()
                return self._fault(ch, h.call_id, "Panicked")
        finally:
            close_all(r.fds)
        self._send_result(ch, h.call_id, m, ok, result, contexts)

    def _arguments(self, m, r, contexts):
        """The checks of docs/wire-format.md ("Call and reply"), in its
        order: the body decodes whole, then each parameter in declaration
        order (an array's count, then each index: range, reuse, kind,
        access; a context's token), then no handle is left unclaimed."""
        wire = []
        for _, p in m.params:
            if isinstance(p, Value):
                wire.append(p.schema.dec(r))
            elif isinstance(p, Context):
                wire.append(U64.dec(r))
            elif p.shape == "one":
                wire.append(U32.dec(r))
            elif p.shape == "optional":
                wire.append(typed.Option(U32).dec(r))
            else:
                wire.append([U32.dec(r) for _ in range(r.length(4))])
        if r.pos != len(r.data):
            raise Malformed(f"{len(r.data) - r.pos} bytes after the arguments")
        args = []
        for (pname, p), w in zip(m.params, wire):
            if isinstance(p, Value):
                args.append(w)
            elif isinstance(p, Context):
                if w not in contexts:
                    raise _CallFault("UnknownContext", parameter=pname)
                args.append(contexts[w][0])
            else:
                if p.shape == "many" and len(w) > p.max:
                    raise _CallFault("TooManyHandles", parameter=pname, max=p.max, got=len(w))
                fds = []
                for index in _items(p.shape, w):
                    fd = r.claim(index)
                    try:
                        _check_handle(fd, p, pname)
                    except WrongKind as e:
                        raise _CallFault("WrongKind", parameter=pname, expected=e.expected, actual=e.actual)
                    except WrongAccess as e:
                        raise _CallFault("WrongAccess", parameter=pname, expected=e.expected, actual=e.actual)
                    fds.append(fd)
                args.append(fds[0] if p.shape == "one" else (fds[0] if fds else None) if p.shape == "optional" else fds)
        if not all(r.claimed):
            raise Malformed("the call carries a handle no parameter claims")
        return args

    def _send_result(self, ch, call_id, m, ok, result, contexts):
        out = bytearray()
        fds = []
        try:
            try:
                if not ok:
                    U32.enc(out, 1, [])
                    m.error.schema.enc(out, result, [])
                else:
                    U32.enc(out, 0, [])
                    res = m.result
                    if isinstance(res, Value):
                        res.schema.enc(out, result, [])
                    elif isinstance(res, NewContext):
                        token = 0
                        while token == 0 or token in contexts:
                            token = int.from_bytes(os.urandom(8), "little")
                        contexts[token] = (result.state, result.rundown)
                        U64.enc(out, token, [])
                    else:
                        items = _items(res.shape, result)
                        fds = [i if isinstance(i, int) else i.fileno() for i in items]
                        if res.shape == "many":
                            U64.enc(out, len(fds), [])
                        elif res.shape == "optional":
                            out.append(0 if result is None else 1)
                        for i in range(len(fds)):
                            U32.enc(out, i, [])
            except Exception as e:
                return self._fault(ch, call_id, "BadResult", detail=str(e))
            ch.send(frame(REPLY, 0, call_id, len(fds), out), fds)
        finally:
            close_all(fds)


def serve_path(path, interface, implementation, **limits):
    """Binds a listener at `path` and serves on a background thread;
    returns the listener (close it to stop accepting)."""
    listener = Listener(path)
    server = Server(interface, implementation, **limits)
    threading.Thread(target=server.serve, args=(listener,), daemon=True).start()
    return listener
