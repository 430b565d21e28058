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


def test_the_shipped_native_proto_extends_the_shared_contract(tmp_path):
    """Every message, field (name, number, type, label) and method of ../shared's
    redispool/v1/jobs.proto is in ours unchanged; ours may only add (comments, fields)."""
    from pathlib import Path

    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    from redispool.grpc.stubs import jobs_pb2
    contract = Path(__file__).resolve().parents[3] / "shared" / "proto"
    if not (contract / "redispool/v1/jobs.proto").exists():
        pytest.skip("../shared/proto (the contract) is not beside this checkout")
    out = tmp_path / "contract.pb"
    assert protoc.main(["grpc_tools.protoc", f"-I{contract}", f"--descriptor_set_out={out}",
                        "redispool/v1/jobs.proto"]) == 0
    theirs = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    ours = descriptor_pb2.FileDescriptorProto.FromString(jobs_pb2.DESCRIPTOR.serialized_pb)
    assert theirs.package == ours.package
    mine = {m.name: m for m in ours.message_type}
    for message in theirs.message_type:
        assert message.name in mine, f"message {message.name} is missing"
        fields = {f.name: f for f in mine[message.name].field}
        for f in message.field:
            assert f.name in fields, f"{message.name}.{f.name} is missing"
            g = fields[f.name]
            assert (g.number, g.type, g.label, g.type_name, g.HasField("oneof_index")) == \
                (f.number, f.type, f.label, f.type_name, f.HasField("oneof_index")), f"{message.name}.{f.name} changed"
    methods = {(s.name, m.name): m for s in ours.service for m in s.method}
    for service in theirs.service:
        for m in service.method:
            g = methods[(service.name, m.name)]
            assert (g.input_type, g.output_type, g.client_streaming, g.server_streaming) == \
                (m.input_type, m.output_type, m.client_streaming, m.server_streaming), f"{m.name} changed"
