"""Who is calling: credentials (API keys, tokens) checked and turned into a `Principal`."""

from gateway.identity.api_keys import ApiKeyRecord, ApiKeyStore
from gateway.identity.principal import Principal

__all__ = ["ApiKeyRecord", "ApiKeyStore", "Principal"]
