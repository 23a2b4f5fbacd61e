"""Redaction on its own: what is removed, what is kept, and inputs that must not break it."""

from __future__ import annotations

import hashlib
import time

import orjson
import pytest

from gateway.audit import Redactor
from gateway.audit.chain import canonical_json
from gateway.settings.audit import RedactionSettings

REDACTOR = Redactor()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdefghijklmnop.qrstuvwx", "abcdefghijklmnop.qrstuvwx"),
        (
            "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "eyJzdWIi",
        ),
        ("key AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
        ("temporary ASIAZZZZZZZZZZZZZZZZ too", "ASIAZZZZZZZZZZZZZZZZ"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("push with ghp_1234567890abcdefghijklmnopqrstuvwxyzAB", "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstu", "github_pat_11ABCDEFG0123456789"),
        ("slack xoxb-123456789012-abcdefghijkl", "xoxb-123456789012-abcdefghijkl"),
        ("charge with CANARY-sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("restricted rk_live_abcdefghij1234", "rk_live_abcdefghij1234"),
        ("maps AIzaSyD-1234567890abcdefghijklmnopqrstu", "AIzaSyD-1234567890abcdefghijklmnopqrstu"),
        ("openai sk-proj-abcdefghijklmnopqrstuvwxyz0123", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"),
        ("db postgresql://admin:hunter2@db.example.com/x", "hunter2"),
        ("https://api.example.com/v1?user=bob&password=s3cr3t-value&page=2", "s3cr3t-value"),
        ('{"client_secret": "abc123xyz789", "page": 1}', "abc123xyz789"),
        ('{"password": "correct horse battery staple"}', "battery staple"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecret\n-----END RSA PRIVATE KEY-----",
            "MIIEowIBAAKCAQEAsecret",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA cut short", "b3BlbnNzaC1rZXktdjEAAAA"),
    ],
)
def test_credentials_in_free_text_are_removed(text, secret):
    redacted = REDACTOR.redact_text(text)
    assert secret not in redacted
    assert "[REDACTED:" in redacted


def test_ordinary_text_is_left_alone():
    for text in (
        "the bearer of bad news",
        "max_tokens=512 temperature=0.2",
        "Refund order 4411 for 12.50 EUR, approved by phone at 10:30",
        "a 40 character id wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY without a name",
        "https://example.com:8443/path@v2",
    ):
        assert REDACTOR.redact_text(text) == text


def test_sensitive_keys_are_redacted_at_any_depth_whatever_their_spelling():
    value = {
        "X-Api-Key": "k1",
        "dbPassword": {"nested": "whole subtree goes"},
        "AUTHORIZATION": "Basic abc",
        "session_token": "t1",
        "Set-Cookie": "c1",
        "userpassword": "p1",
        "max_tokens": 512,
        "tokenizer": "cl100k",
        "a": {"b": {"c": {"d": {"password": "CANARY-nested-5"}}}},
        "aws_key_id_2": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    redacted = REDACTOR.redact_value(value)
    encoded = orjson.dumps(redacted).decode()
    for secret in ("k1", "whole subtree", "Basic abc", "t1", "c1", "p1", "CANARY-nested-5", "wJalrXUtnFEMI"):
        assert secret not in encoded
    assert redacted["max_tokens"] == 512 and redacted["tokenizer"] == "cl100k"
    assert redacted["a"]["b"]["c"]["d"]["password"] == "[REDACTED:key]"


def test_per_tool_rules_apply_to_that_tool_only():
    redactor = Redactor(RedactionSettings(tools={"crm.update": ("/customer/ssn", "/items/*/card", "cvv")}))
    value = {"customer": {"ssn": "123-45-6789", "name": "Ada"}, "items": [{"card": "4111"}, {"card": "5500"}], "CVV": 1}
    redacted = redactor.redact_value(value, tool="crm.update")
    assert redacted == {
        "customer": {"ssn": "[REDACTED:key]", "name": "Ada"},
        "items": [{"card": "[REDACTED:key]"}, {"card": "[REDACTED:key]"}],
        "CVV": "[REDACTED:key]",
    }
    assert redactor.redact_value(value, tool="crm.lookup") == value


def test_kind_labels_can_be_turned_off():
    redactor = Redactor(RedactionSettings(label_kinds=False))
    assert redactor.redact_text("password=hunter22 and AKIAIOSFODNN7EXAMPLE") == "password=[REDACTED] and [REDACTED]"


def test_a_10_mb_argument_is_bounded_with_size_and_digest_of_the_whole():
    huge = {"document": "lorem ipsum " * 900_000, "api_key": "CANARY-in-a-big-one"}
    started = time.perf_counter()
    stored = REDACTOR.redact_arguments(huge)
    elapsed = time.perf_counter() - started
    assert stored.truncated and stored.value is None
    assert len(stored.preview.encode()) <= 64 * 1024
    assert "CANARY" not in stored.preview
    whole = canonical_json({"api_key": "[REDACTED:key]", "document": huge["document"]})
    assert stored.size == len(whole) > 10_000_000
    assert stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert elapsed < 5, f"redacting 10 MB took {elapsed:.1f} s"


def test_a_10000_level_argument_is_cut_at_the_depth_bound():
    deep: dict = {}
    node = deep
    for _ in range(10_000):
        node["next"] = {}
        node = node["next"]
    node["password"] = "CANARY-deep"
    listed: list = []
    cursor = listed
    for _ in range(10_000):
        cursor.append([])
        cursor = cursor[0]
    for value in (deep, listed):
        stored = REDACTOR.redact_arguments(value)
        encoded = orjson.dumps(stored.value).decode()
        assert stored.truncated and "nested too deeply" in encoded and "CANARY" not in encoded
        assert encoded.count("[") + encoded.count("{") <= 65


def test_binary_and_invalid_text_are_stored_safely():
    value = {
        "blob": b"\x89PNG\r\n\x1a\n\xff\xfe",
        "utf8_bytes": b"password=CANARY-in-bytes",
        "lone_surrogate": "broken \ud800 text",
        "nul": "a\x00b",
        "huge_int": 2**200,
        "not_a_number": float("nan"),
        b"\xffkey": "binary key",
        7: "number key",
        "tuple": (1, 2),
        "set": {3},
        "object": object.__new__(type("Opaque", (), {"__str__": lambda self: "opaque"})),
    }
    stored = REDACTOR.redact_arguments(value)
    encoded = canonical_json(stored.value).decode()  # valid UTF-8 JSON, or this raises
    assert "[BINARY: 10 bytes, sha256 " in encoded
    assert "CANARY" not in encoded
    assert stored.value["lone_surrogate"] == "broken \\ud800 text"
    assert stored.value["huge_int"] == str(2**200) and stored.value["not_a_number"] == "nan"
    assert stored.value["7"] == "number key" and stored.value["tuple"] == [1, 2]
    assert stored.value["object"] == "opaque"


def test_the_digest_reveals_nothing_about_a_redacted_secret():
    first = REDACTOR.redact_arguments({"user": "bob", "password": "hunter2"})
    second = REDACTOR.redact_arguments({"user": "bob", "password": "correct horse battery staple"})
    assert first.sha256 == second.sha256


def test_redact_text_cuts_long_text_after_redacting():
    text = "x" * 20_000 + " token=CANARY-at-the-end"
    redacted = REDACTOR.redact_text(text, max_chars=100)
    assert redacted.startswith("x" * 100) and "TRUNCATED: 20024 characters" in redacted
    assert "CANARY" not in redacted
    assert REDACTOR.redact_text("Bearer CANARYtoken1234 " + "y" * 50, max_chars=30).count("CANARY") == 0
