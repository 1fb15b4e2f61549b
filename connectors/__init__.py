"""One small protocol per kind of external system, with implementations chosen by URI scheme."""
