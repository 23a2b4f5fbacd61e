"""Every kind a connector file may name, as one union the file's `kind` selects from.

Its own module because kinds with modules of their own (`gateway.settings.openapi`) build on
`ConnectorBase` from `gateway.settings.connectors`: the union can only be written once both exist.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gateway.settings.connectors import McpHttpConnector, McpStdioConnector, PythonConnector
from gateway.settings.openapi import OpenApiConnector

AnyConnector = McpStdioConnector | McpHttpConnector | OpenApiConnector | PythonConnector
ConnectorSettings = Annotated[AnyConnector, Field(discriminator="kind")]
