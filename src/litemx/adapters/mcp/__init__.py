"""The MCP adapter (SPEC §7): nine tools over the services, served by streamable HTTP at /mcp
and by `litemx mcp` over stdio."""
