"""Fixtures: the Rust peer binary, and the open-descriptor check every test
that moves descriptors makes."""

import json
import os
import subprocess

import pytest

import shared
from handoff import count_open


@pytest.fixture(scope="session")
def rust_peer():
    """The path of the Rust interop peer (handoff/examples/interop_peer):
    $HANDOFF_INTEROP_PEER if set (CI builds it first), else built here with
    cargo."""
    path = os.environ.get("HANDOFF_INTEROP_PEER")
    if path:
        assert os.access(path, os.X_OK), f"HANDOFF_INTEROP_PEER={path} is not an executable"
        return path
    out = subprocess.run(
        ["cargo", "build", "-p", "handoff", "--example", "interop_peer", "--message-format=json"],
        cwd=shared.REPO, check=True, stdout=subprocess.PIPE,
    ).stdout
    for line in out.decode().splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "interop_peer":
            if msg.get("executable"):
                return msg["executable"]
    raise AssertionError("cargo built no interop_peer executable")


@pytest.fixture
def no_leaks():
    """Asserts the test left as many descriptors open as it found."""
    before = count_open()
    yield
    after = count_open()
    assert after == before, f"open descriptors: {before} before, {after} after"
