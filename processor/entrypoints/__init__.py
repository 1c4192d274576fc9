"""The command, its settings and the composition root."""
