"""Where a build's targets run: threads on this machine (local) or tasks on a Ray cluster (ray)."""
