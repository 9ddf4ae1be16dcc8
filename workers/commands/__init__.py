"""``ea`` sub-commands, one module per area, each exporting ``COMMANDS`` (a list of click commands)."""
