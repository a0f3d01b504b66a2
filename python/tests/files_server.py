"""A Python interop.Files server serving one connection on a thread, and a
raw channel to it: how the tests talk to the server frame by frame."""

import contextlib
import threading

import peer
import shared
from handoff import Channel, Listener, rpc


@contextlib.contextmanager
def raw_connection(path):
    """Listens at `path`, connects, and serves that one connection on a
    thread; yields our end (before any handshake). On exit our end is
    closed, the server's thread joined and the listener closed."""
    listener = Listener(path)
    server = rpc.Server(shared.FILES, peer.PyFiles())
    ch = Channel.connect(path)
    t = threading.Thread(target=server.serve_connection, args=(listener.accept(),))
    t.start()
    try:
        yield ch
    finally:
        ch.close()
        t.join()
        listener.close()
