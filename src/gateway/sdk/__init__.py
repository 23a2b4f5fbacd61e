"""The connector author's SDK: write a Python connector whose tools the gateway governs like any backend's.

```python
from typing import Annotated
from pydantic import Field
from gateway.sdk import Connector, ToolError

connector = Connector("crm")

@connector.tool(read_only=True)
async def get_customer(customer_id: Annotated[str, Field(description="The customer's id")]) -> dict[str, str]:
    \"\"\"Read one customer.\"\"\"
    ...
```

It depends on pydantic and anyio only (the `serve` host adds the official `mcp` SDK), so a
connector package can be tested without a gateway running.
"""

from gateway.sdk.connector import Connector, SettingsError
from gateway.sdk.loading import ENTRY_POINT_GROUP, ConnectorNotFound, load
from gateway.sdk.tools import Tool, ToolAnnotations, ToolError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Connector",
    "ConnectorNotFound",
    "SettingsError",
    "Tool",
    "ToolAnnotations",
    "ToolError",
    "load",
]
