"""The govplane control plane: API, identity, run engine, inventory, CLI and the SQL store."""
