"""A generated scenario and an independent computation of what the lake must hold for it."""
