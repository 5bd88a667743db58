"""slam."""
