"""Official files: download catalogue, resumable downloads, readers (validate, normalise, quarantine)."""
