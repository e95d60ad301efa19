"""File-level steps wrapped by the nipype interfaces (read files, call the core, write files)."""
