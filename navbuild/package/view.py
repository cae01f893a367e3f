"""``navbuild.load``: inspect a .nav package (status table, best variant, paths) after verifying it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navbuild.package.archive import extract, verify


@dataclass
class Package:
    """A verified package: its manifest, size, and (after ``navbuild.export``) the build result."""

    path: Path
    manifest: dict
    size: int
    build: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | Path) -> "Package":
        path = Path(path)
        return cls(path=path, manifest=verify(path), size=path.stat().st_size)

    @property
    def best(self) -> str | None:
        return self.manifest["best"]["variant"]

    @property
    def variants(self) -> dict:
        return self.manifest["variants"]

    def targets(self) -> list[dict]:
        """One row per target: id, status, whether its artifacts are in the package, hardware."""
        rows = []
        for tid, t in self.manifest["targets"].items():
            hw = (t.get("payload") or {}).get("hardware")
            rows.append({"id": tid, "status": t["status"], "included": t["included"],
                         "files": sorted(t["files"]), "key": t["key"],
                         "hardware": hw.get("cpu_model") if hw else None,
                         "verdict": (t.get("result") or {}).get("verdict")})
        return rows

    def extract(self, into: str | Path) -> Path:
        """Unpack (verified) into ``into/<digest>``; returns the folder with source/, samples/, targets/."""
        return extract(self.path, Path(into))[0]

    def describe(self) -> str:
        m = self.manifest
        lines = [f"{self.path} — navbuild package v{m['format_version']} ({self.size / 1e6:.2f} MB), "
                 f"written by navbuild {m['navbuild_version']} on {m['created']}",
                 f"source: {m['source_framework']} ({m['source']['kind']}); inputs: "
                 + ", ".join(f"{i['name']} {i['dtype']}{list(i['shape'])}" for i in m["inputs"])
                 + f"; outputs: {', '.join(m['outputs'])}",
                 f"measured on: {m['hardware']['cpu_model']} ({m['hardware']['usable_cpus']} cpus)", "", "targets:"]
        for row in self.targets():
            extra = f" verdict {row['verdict']}" if row["verdict"] else ""
            where = "in package" if row["included"] else "not included (rebuilds when continued)"
            lines.append(f"  {row['id']:<24} {row['status']:<8} {where}{extra}")
        lines += ["", "variants:"]
        for name, v in self.variants.items():
            prof = v.get("profile") or {}
            figs = ", ".join(f"b{b}: {f['throughput']:.1f}/s p50 {f['latency_ms']['p50']:.3f} ms"
                             for b, f in sorted(prof.items(), key=lambda kv: int(kv[0])))
            lines.append(f"  {name:<10} {v['verdict']:<10} {figs}")
        lines += ["", f"best: {self.best or 'none'} — {self.manifest['best']['why']}"]
        return "\n".join(lines)
