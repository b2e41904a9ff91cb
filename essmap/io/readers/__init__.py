"""One reader per official format: validate, normalise, quarantine bad rows."""
