"""The YAML sections of a policy bundle, one module per file."""
