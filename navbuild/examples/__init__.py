"""Example models the packaged recipes build (imported lazily: torch and transformers load on call)."""
