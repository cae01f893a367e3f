"""Before a build keys anything: discover what defines a torch source when it is not recorded yet
or something recorded changed, in a child process like any step (log and reproduce script kept)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from navbuild.cache.fs import disk_full, ran_out_of_space, writing
from navbuild.errors import InputError
from navbuild.execute.isolation import run_child, write_job
from navbuild.planning.graph import Graph
from navbuild.planning.source_record import SourceRecord, attach, changes, record_data, write_record
from navbuild.planning.target import Leaf
from navbuild.report.events import Reporter
from navbuild.steps.base import load_step, params_to_dict

#: the folder (under the build dir) that keeps the log of the last discovery run
DISCOVERY_DIR = "source-dependencies"


def refresh_source_record(graph: Graph, declared: Leaf, record: SourceRecord, params: Any, store: Any,
                          build_dir: Path, cwd: Path, reporter: Reporter) -> SourceRecord:
    """Run the discovery if ``record`` needs it, write the new record and attach it to the
    ``declared`` leaf (the source as the recipe names it) in ``graph``.

    A model that cannot be built fails here as it would in the reference step (an input
    problem is raised); any other failure is a warning and the build goes on with the declared
    files only, where the reference step reports the same failure in full.
    """
    if not record.needs_discovery:
        return record
    step = load_step("DiscoverSourceDependencies")
    why = "; ".join(record.changes) if record.changes else "first build of this source"
    reporter.note(f"source: discovering what defines the model ({why})")
    what = "the source's dependency discovery"
    with writing(store.root, f"the job files of {what}"):
        staging = store.staging(hashlib.sha256(str(record.path).encode()).hexdigest())
    try:
        with writing(staging, f"the job files of {what}"):
            write_job(staging, DISCOVERY_DIR, step.name, params_to_dict(params), {}, cwd)
        with writing(staging / "log.txt", f"the log of {what}"):
            child = run_child(staging, cwd)
        log_dir = Path(build_dir) / DISCOVERY_DIR
        with writing(log_dir, f"the log of {what} to the build folder"):
            _keep_log(staging, log_dir)
        if not child.ok and ran_out_of_space(staging, f"{child.message}\n{child.log_tail}"):
            raise disk_full(staging, f"the output of {what}")
        if not child.ok:
            if child.input_error:
                raise InputError(f"source: {child.message} (log: {log_dir / 'log.txt'})")
            reporter.warning(f"source: could not discover the model's dependencies ({child.message}); "
                             f"only the declared files identify it this time (log: {log_dir / 'log.txt'})")
            return record
        data = record_data(declared, child.result, store.memo)
        try:
            with writing(record.path.parent, f"the record of {what}"):
                write_record(record.path, data)
            store.push_shared(record.path)
        except OSError as e:  # a read-only cache: this build is still keyed on what was found
            reporter.warning(f"source: could not record its dependencies in {record.path.parent} "
                             f"({e.strerror or e}); the next build discovers them again")
    finally:
        store.discard(staging)
    fresh = SourceRecord(record.path, data, changes(data, store.memo, cwd))
    graph.leaves[declared.id] = declared  # the previous record's files must not linger
    attach(graph, declared.id, fresh)
    found = child.result
    reporter.note(f"source: defined by {len(found.get('modules', []))} module(s), {len(found.get('files', []))} "
                  f"other file(s), {len(found.get('distributions', {}))} distribution(s) "
                  f"(see {log_dir / 'log.txt'})")
    return fresh


def _keep_log(staging: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("log.txt", "reproduce.sh", "job.json"):
        if (staging / name).is_file():
            shutil.copy2(staging / name, dest / name)


__all__ = ["refresh_source_record", "DISCOVERY_DIR"]
