"""The .nav package: export at training time, continue anywhere (read, verify, seed the cache)."""
