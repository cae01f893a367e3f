"""The build cache: content-addressed store, cache keys, digest memo, build records and gc."""

from __future__ import annotations

from navbuild.cache.digest import DigestMemo, directory_files, sha256_file, tree_digest
from navbuild.cache.gc import GcReport, collect, parse_age, parse_size
from navbuild.cache.keys import (
    KEY_SCHEMA_VERSION,
    cache_key,
    canonical_json,
    explain_change,
    key_payload,
    tool_versions,
)
from navbuild.cache.records import RECORD_SCHEMA_VERSION, Records, record_name
from navbuild.cache.store import CACHE_ENV, DEFAULT_CACHE_DIRNAME, Entry, Store, resolve_cache_dir

__all__ = [
    "CACHE_ENV", "DEFAULT_CACHE_DIRNAME", "KEY_SCHEMA_VERSION", "RECORD_SCHEMA_VERSION",
    "DigestMemo", "Entry", "GcReport", "Records", "Store",
    "cache_key", "canonical_json", "collect", "directory_files", "explain_change",
    "key_payload", "parse_age", "parse_size", "record_name", "resolve_cache_dir",
    "sha256_file", "tool_versions", "tree_digest",
]
