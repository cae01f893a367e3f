"""``navbuild.load``: inspect a .nav package (status table, best variant, paths) after verifying it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from navbuild.package.archive import PackageError, extract, verify
from navbuild.package.manifest import STATE_DICT_FILE


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
                         "hardware": hw.get("cpu_model") if isinstance(hw, dict) else None,
                         "verdict": (t.get("result") or {}).get("verdict")})
        return rows

    def extract(self, into: str | Path) -> Path:
        """Unpack (verified) into ``into/<digest>``; returns the folder with source/, samples/, targets/."""
        return extract(self.path, Path(into))[0]

    def state_dict(self) -> dict:
        """The model's state dict, read straight from the (verified) package with
        ``torch.load(weights_only=True)``: tensors only, never pickled code."""
        import io
        import zipfile

        import torch


        if self.manifest["source"].get("state_dict") != STATE_DICT_FILE:
            raise PackageError(f"package {self.path}: holds no state dict")
        verify(self.path)  # the file may have changed since it was opened
        with zipfile.ZipFile(self.path) as zf:
            data = zf.read(STATE_DICT_FILE)
        if hashlib.sha256(data).hexdigest() != self.manifest["files"][STATE_DICT_FILE]["sha256"]:
            raise PackageError(f"package {self.path}: {STATE_DICT_FILE} changed since it was verified")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - anything but plain tensors is refused
            raise PackageError(f"package {self.path}: {STATE_DICT_FILE} is not a plain state dict "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None

    def describe(self) -> str:
        m = self.manifest
        lines = [f"{self.path} — navbuild package v{m['format_version']} ({self.size / 1e6:.2f} MB), "
                 f"written by navbuild {m['navbuild_version']} on {m['created']}",
                 f"source: {m['source_framework']} ({m['source']['kind']}); inputs: "
                 + ", ".join(f"{i['name']} {i['dtype']}{list(i['shape'])}" for i in m["inputs"])
                 + f"; outputs: {', '.join(m['outputs'])}",
                 f"measured on: {m['hardware'].get('cpu_model') or '?'} ({m['hardware'].get('usable_cpus') or '?'} cpus)",
                 "", "targets:"]
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
