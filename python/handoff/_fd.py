"""Small helpers for owned file descriptors."""

import os


def close_all(fds):
    """Closes every descriptor in `fds`, ignoring ones already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def count_open():
    """The number of descriptors open in this process (Linux: /proc/self/fd,
    less the one listing it)."""
    return len(os.listdir("/proc/self/fd")) - 1


class Closing:
    """`with` support for an object that owns descriptors: the block's end
    calls its `close()`."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
