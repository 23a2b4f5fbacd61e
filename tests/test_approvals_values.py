"""The approval's values without a database: states, requirements, ids, the canonical digest, sealing."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from gateway.approvals import TRANSITIONS, ApprovalState, Requirement, Sealer, arguments_digest, canonical_form, uuid7
from gateway.errors import ConfigError, InvalidArguments, SealedArgumentsUnreadable


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_the_transitions_are_the_documented_ones() -> None:
    moves = {(source.value, target.value) for source, targets in TRANSITIONS.items() for target in targets}
    assert moves == {
        ("pending", "approved"),
        ("pending", "denied"),
        ("pending", "expired"),
        ("pending", "cancelled"),
        ("pending", "answered"),  # a question (gateway__ask_human) a person answered
        ("approved", "executing"),
        ("approved", "expired"),
        ("executing", "succeeded"),
        ("executing", "failed"),
        ("executing", "unknown"),
    }
    assert {state for state in ApprovalState if state.ended} == {
        ApprovalState.SUCCEEDED,
        ApprovalState.FAILED,
        ApprovalState.UNKNOWN,
        ApprovalState.DENIED,
        ApprovalState.EXPIRED,
        ApprovalState.CANCELLED,
        ApprovalState.ANSWERED,
    }


def test_a_requirement_refuses_what_cannot_be_met() -> None:
    with pytest.raises(ValueError):
        Requirement(approvers=())
    with pytest.raises(ValueError):
        Requirement(approvers=("finance",))
    with pytest.raises(ValueError):
        Requirement(approvers=("role:finance",), quorum=0)
    with pytest.raises(ValueError):
        Requirement(approvers=("role:finance",), expires_in=timedelta(0))
    assert Requirement(approvers=("role:finance", "user:bob")).quorum == 1


def test_uuid7_carries_the_time_version_and_variant() -> None:
    moment = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    value = uuid7(moment)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(moment.timestamp() * 1000)
    assert str(uuid7(moment + timedelta(milliseconds=1))) > str(value)
    assert uuid7(moment) != value


def test_the_digest_ignores_key_order_and_number_spelling() -> None:
    one = arguments_digest("crm.delete", {"id": 1, "opts": {"b": [1, 2], "a": True}})
    other = arguments_digest("crm.delete", {"opts": {"a": True, "b": [1.0, 2e0]}, "id": 1.0})
    assert one == other
    assert arguments_digest("crm.remove", {"id": 1, "opts": {"b": [1, 2], "a": True}}) != one
    assert arguments_digest("crm.delete", {"id": 1, "opts": {"b": [2, 1], "a": True}}) != one


def test_the_digest_is_sha256_of_the_documented_canonical_form() -> None:
    arguments = {"name": "Zoë", "😀": 1, "é": [None, 0.1, 1e21, -0.0], "a": {"z": 1, "y": 2}}
    form = canonical_form("t.x", arguments)
    assert (
        form == ('{"arguments":{"a":{"y":2,"z":1},"name":"Zoë","é":[null,0.1,1e+21,0],"😀":1},"tool":"t.x"}').encode()
    )
    assert arguments_digest("t.x", arguments) == hashlib.sha256(form).hexdigest()
    # Unicode is not normalised: NFC and NFD are different arguments.
    assert arguments_digest("t", {"n": "\u00e9"}) != arguments_digest("t", {"n": "e\u0301"})
    # A fixed value, so a change of library or rules that moves every digest cannot pass unnoticed.
    assert (
        arguments_digest("crm.delete", {"id": 1.0})
        == "68363b141f0205c4ea535406a3a0623ad5b362caf0f082eafe15b051e9311ac8"
    )


def test_the_digest_refuses_numbers_without_a_canonical_form() -> None:
    with pytest.raises(InvalidArguments, match="large integers"):
        arguments_digest("t", {"n": 2**60})
    with pytest.raises(InvalidArguments):
        arguments_digest("t", {"n": float("nan")})


def test_sealed_arguments_open_exactly_and_only_for_their_approval() -> None:
    sealer = Sealer([("k1", _key())])
    arguments = {"password": "hunter2", "n": 2**70, "f": 1.0, "s": "é\ud800"}
    blob = sealer.seal("a-1", arguments)
    assert b"hunter2" not in blob
    assert sealer.open("a-1", blob) == arguments
    assert type(sealer.open("a-1", blob)["f"]) is float
    with pytest.raises(SealedArgumentsUnreadable, match="do not open"):
        sealer.open("a-2", blob)


def test_keys_rotate_seal_with_the_first_open_with_any() -> None:
    old, new = _key(), _key()
    blob = Sealer([("old", old)]).seal("a-1", {"x": 1})
    rotated = Sealer([("new", new), ("old", old)])
    assert rotated.open("a-1", blob) == {"x": 1}
    assert rotated.open("a-1", rotated.seal("a-1", {"x": 2})) == {"x": 2}
    assert rotated.current_key_id == "new"
    with pytest.raises(SealedArgumentsUnreadable, match="key 'old', which is not configured"):
        Sealer([("new", new)]).open("a-1", blob)
    with pytest.raises(SealedArgumentsUnreadable, match="do not open with key 'old'"):
        Sealer([("old", _key())]).open("a-1", blob)


def test_bad_keys_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="at least one key"):
        Sealer([])
    with pytest.raises(ConfigError, match="16 bytes"):
        Sealer([("k", base64.b64encode(os.urandom(16)).decode())])
    with pytest.raises(ConfigError, match="not valid base64"):
        Sealer([("k", "not base64!!")])
    with pytest.raises(ConfigError, match="listed twice"):
        Sealer([("k", _key()), ("k", _key())])
    url_safe = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    assert Sealer([("k", url_safe)]).current_key_id == "k"
