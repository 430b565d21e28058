"""The committed gRPC stubs match the shipped .proto files: regenerated into a temporary
directory, they must describe the same messages and services (and, made by the same
grpcio-tools version as the committed ones, be the same text)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("grpc_tools")

from redispool.grpc import generate  # noqa: E402


def test_committed_stubs_are_what_the_protos_generate(tmp_path):
    fresh = {p.name: p.read_text() for p in generate.generate(tmp_path)}
    committed = {p.name: p.read_text() for p in generate.STUBS.glob("*_pb2*.py*")}
    assert set(fresh) == set(committed), "stubs added or removed: run python -m redispool.grpc.generate"
    serialized = re.compile(r"AddSerializedFile\((b'.*?')\)", re.S)
    for name in ("jobs_pb2.py", "spooled_pb2.py"):
        assert serialized.search(fresh[name]).group(1) == serialized.search(committed[name]).group(1), \
            f"{name} is stale: run python -m redispool.grpc.generate"
    version = re.compile(r"GRPC_GENERATED_VERSION = '([^']+)'")
    if version.search(fresh["jobs_pb2_grpc.py"]).group(1) == version.search(committed["jobs_pb2_grpc.py"]).group(1):
        for name, text in fresh.items():
            assert text == committed[name], f"{name} is stale: run python -m redispool.grpc.generate"


def test_the_shipped_protos_are_the_contracts():
    """redispool.v1 as ../shared/proto has it; spooled.v1 descriptor-identical to the hosted
    service's client (so a process may load both)."""
    from redispool.grpc.stubs import jobs_pb2, spooled_pb2
    assert jobs_pb2.DESCRIPTOR.name == "redispool/v1/jobs.proto"
    assert [m.name for m in jobs_pb2.DESCRIPTOR.services_by_name["Jobs"].methods] == ["Enqueue", "EnqueueBatch", "Work"]
    sdk = pytest.importorskip("spooled.grpc.stubs.spooled_pb2")
    assert spooled_pb2.DESCRIPTOR.serialized_pb == sdk.DESCRIPTOR.serialized_pb
