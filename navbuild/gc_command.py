"""``navbuild gc``: prune the cache of entries no build refers to, by age and by size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from navbuild.cache.gc import collect, parse_age, parse_size
from navbuild.cache.records import Records
from navbuild.cache.open import open_store
from navbuild.errors import RecipeError


def gc_main(argv: Sequence[str]) -> int:

    parser = argparse.ArgumentParser(prog="navbuild gc", description=__doc__)
    parser.add_argument("--cache-dir", default=None, help="cache folder or object-store URL (default: $NAVBUILD_CACHE_DIR or ./.navbuild-cache)")
    parser.add_argument("--max-size", default=None, help="evict least recently used entries above this size (e.g. 2G)")
    parser.add_argument("--max-age", default=None, help="remove entries not used for this long (e.g. 30d, 12h)")
    parser.add_argument("--keep-unreferenced", action="store_true", help="keep entries no recorded build refers to")
    parser.add_argument("--compile-cache", action="store_true",
                        help="also clear torch.compile's cache (compile-cache/, rebuilt when needed)")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash every cached file, trusting no memoized digest, and remove entries that fail")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        max_size = parse_size(args.max_size) if args.max_size else None
        max_age = parse_age(args.max_age) if args.max_age else None
    except ValueError as exc:
        raise RecipeError(str(exc), where="navbuild gc") from None
    store = open_store(args.cache_dir, Path.cwd())
    root = store.root
    remote = getattr(store, "url", None)
    if remote:
        # the object store is shared with other machines: only this machine's copy is pruned
        print(f"navbuild gc: {remote} is an object store; pruning its local cache {root} "
              f"(the entries in {remote} are kept)")
    if not root.exists():
        print(f"navbuild gc: no cache at {root}; nothing to do")
        return 0
    records = Records(root / "records")
    report = collect(store, records, max_size=max_size, max_age_s=max_age,
                     keep_unreferenced=args.keep_unreferenced, dry_run=args.dry_run, verify=args.verify)
    for w in records.warnings + store.warnings:
        print(f"warning: {w}")
    verb = "would remove" if args.dry_run else "removed"
    compile_cache = root / "compile-cache"
    if compile_cache.is_dir():
        size = sum(f.stat().st_size for f in compile_cache.rglob("*") if f.is_file())
        if args.compile_cache:
            if not args.dry_run:
                import shutil

                shutil.rmtree(compile_cache, ignore_errors=True)
            print(f"{verb} torch.compile cache ({size / 1e6:.2f} MB)")
        else:
            print(f"torch.compile cache: {size / 1e6:.2f} MB (clear it with --compile-cache)")
    for key, size, reason in report.removed:
        print(f"{verb} {key[:16]}  {size / 1e6:9.2f} MB  {reason}")
    if args.verify:
        bad = sum(1 for _k, _s, reason in report.removed if reason.startswith("corrupt ("))
        print(f"verified {report.verified} entries by re-hashing every file: {bad} corrupt")
        for path in report.memo_wrong:
            print(f"re-hashed {path}: its content changed with the same inode, size and mtime "
                  f"(targets built from it rebuild next time)")
    print(f"navbuild gc: {verb} {len(report.removed)} entries ({report.freed_bytes / 1e6:.2f} MB) and "
          f"{report.staging_removed} stale staging folders; kept {report.kept_entries} entries "
          f"({report.kept_bytes / 1e6:.2f} MB) in {root}")
    return 0
