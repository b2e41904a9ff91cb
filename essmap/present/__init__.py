"""What a view shows: view state, view data, classes, base maps (no drawing)."""
