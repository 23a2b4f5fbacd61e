"""Who is calling: agents' credentials (API keys, tokens) turned into a `Principal`, people's into a `User`."""

from gateway.identity.api_keys import ApiKeyRecord, ApiKeyStore
from gateway.identity.principal import Principal

__all__ = ["ApiKeyRecord", "ApiKeyStore", "Principal"]
