"""gpvton_core."""
