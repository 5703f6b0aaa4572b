"""The `litemx` command: a REST client (noun-verb) plus the server-side commands."""
