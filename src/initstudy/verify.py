"""Re-hash what dvc.lock names, in the workspace and in DVC's cache; repair what is damaged:
`make verify`.

DVC trusts its cache by name: an object whose bytes changed (a flipped bit, a bad copy) is
checked out, pushed and restored as if it were whole, and `dvc status` reports nothing.
This hashes every output and input that dvc.lock records, as it is in the workspace, and
every cache object behind them (each file of a folder too), and names each that does not
hash to its name. A damaged object is dropped, then fetched again from the default remote
or, without one (or if the remote lacks it), made again by its stage
(`dvc repro --force --single-item`); then the outputs are checked out again. An input that
differs from dvc.lock is a change, not damage: `dvc repro` reruns what depends on it.

    python -m initstudy.verify             # or: make verify
    python -m initstudy.verify --no-repair # only report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dvc.config import Config
from dvc.utils.serialize import load_yaml
from dvc_data.hashfile.hash_info import HashInfo
from dvc_data.hashfile.meta import Meta
from dvc_data.hashfile.tree import Tree

from initstudy.errors import StudyError, stage_main
from initstudy.supervise import Interrupted, catch_signals, dvc, exit_status


def cache_dir() -> Path:
    """DVC's cache folder here, as `dvc cache dir` gives it (read from DVC's config in this process)."""
    return Path(Config(dvc_dir=".dvc")["cache"].get("dir") or Path(".dvc", "cache").resolve())


def file_md5(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "md5").hexdigest()


def folder_md5(path: Path) -> str:
    """DVC's hash of a folder (`<md5>.dir`), from each file's md5 by DVC's own listing (dvc_data's Tree)."""
    tree = Tree()
    for item in path.rglob("*"):
        if item.is_file():
            tree.add(item.relative_to(path).parts, Meta(size=item.stat().st_size), HashInfo("md5", file_md5(item)))
    tree.digest()
    return tree.hash_info.value


def workspace_md5(path: Path) -> str | None:
    """DVC's md5 of a file or folder in the workspace; None if it is not there."""
    if path.is_dir():
        return folder_md5(path)
    return file_md5(path) if path.is_file() else None


@dataclass
class Record:
    """A path with the md5 that dvc.lock records for it, and the stages that name it."""

    path: str
    md5: str
    made_by: str | None = None  # the stage whose output it is (None: an input only)
    cached: bool = True  # whether DVC keeps it in the cache (an output without `cache: false`)
    stages: list[str] = field(default_factory=list)


def records(lock: dict, uncached: set[str]) -> list[Record]:
    """Every path and md5 of dvc.lock, once each, with the stage that made it."""
    found: dict[tuple[str, str], Record] = {}
    for stage, entry in lock.get("stages", {}).items():
        for kind in ("outs", "deps"):
            for item in entry.get(kind, []):
                if "md5" not in item:
                    continue
                record = found.setdefault((item["path"], item["md5"]), Record(item["path"], item["md5"]))
                record.stages.append(stage)
                if kind == "outs":
                    record.made_by, record.cached = stage, item["path"] not in uncached
    return list(found.values())


def uncached_outputs(pipeline: dict) -> set[str]:
    """The outputs and metrics that dvc.yaml keeps out of the cache (`cache: false`)."""
    return {path for stage in pipeline.get("stages", {}).values() for kind in ("outs", "metrics", "plots")
            for out in stage.get(kind, []) if isinstance(out, dict)
            for path, options in out.items() if (options or {}).get("cache") is False}


class Cache:
    """DVC's local cache: each object checked once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[str, str] = {}

    def object(self, md5: str) -> Path:
        return self.root / "files" / "md5" / md5[:2] / md5[2:]

    def state(self, md5: str) -> str:
        """'ok', 'missing', or 'damaged' (its bytes do not hash to its name)."""
        if md5 not in self.seen:
            path = self.object(md5)
            self.seen[md5] = ("missing" if not path.is_file() else
                              "ok" if file_md5(path) == md5.removesuffix(".dir") else "damaged")
        return self.seen[md5]

    def damaged(self, record: Record) -> list[tuple[str, str]]:
        """The damaged objects behind `record`: (what it holds, md5); a folder's listing and its files."""
        found = [(record.path, record.md5)] if self.state(record.md5) == "damaged" else []
        if record.md5.endswith(".dir") and self.state(record.md5) == "ok":
            for item in json.loads(self.object(record.md5).read_text()):
                if self.state(item["md5"]) == "damaged":
                    found.append((f"{record.path}/{item['relpath']}", item["md5"]))
        return found


@dataclass
class Findings:
    damaged: dict[str, list[str]] = field(default_factory=dict)  # stage: what of it is damaged
    differs: list[Record] = field(default_factory=list)  # outputs that differ in the workspace
    changed: list[Record] = field(default_factory=list)  # inputs that changed since the lock
    missing: int = 0  # objects not in the cache (not damage)


def inspect(lock: dict, uncached: set[str], cache: Cache, quiet: bool = False) -> Findings:
    """Hash every record of `lock` in the workspace and in `cache`, and print each problem
    (`quiet`: only what DVC keeps in its cache, and nothing of the inputs changed since the lock)."""
    findings = Findings()
    for record in records(lock, uncached):
        if quiet and not (record.made_by and record.cached):
            continue
        if record.made_by and record.cached:
            for what, md5 in cache.damaged(record):
                print(f"damaged: the cache object of {what} ({record.made_by}): its bytes do not hash to {md5}")
                findings.damaged.setdefault(record.made_by, []).append(what)
            findings.missing += cache.state(record.md5) == "missing"
        here = workspace_md5(Path(record.path))
        if here is None or here == record.md5:
            continue
        if record.made_by:
            print(f"damaged: {record.path} in the workspace differs from what dvc.lock records ({record.made_by})")
            findings.differs.append(record)
        else:
            findings.changed.append(record)
    for record in findings.changed:
        print(f"changed: {record.path} since dvc.lock (an input of {', '.join(record.stages[:3])}"
              f"{' …' if len(record.stages) > 3 else ''}): `dvc repro` reruns what depends on it")
    return findings


def repair(findings: Findings, cache: Cache, lock: dict) -> None:
    """Drop the damaged objects, fetch them again or remake them, then check the outputs out again."""
    remote = dvc("config", "core.remote", capture=True, check=False).strip()
    for stage, what in findings.damaged.items():
        for item in lock["stages"][stage].get("outs", []):
            for md5 in [item.get("md5", ""), *_listing(cache, item.get("md5", ""))]:
                if md5 and cache.state(md5) == "damaged":
                    cache.object(md5).unlink()
        print(f"repair: dropped the damaged object(s) of {', '.join(what)}", flush=True)
        if remote:
            dvc("fetch", "--quiet", stage, check=False)
        cache.seen.clear()
        if not remote or any(cache.state(md5) != "ok" for md5 in _outputs(lock, stage, cache)):
            print(f"repair: {stage} again, to make what it made", flush=True)
            dvc("repro", "--force", "--single-item", stage)
        else:
            print(f"repair: fetched {stage}'s outputs from the remote '{remote}'", flush=True)
    cache.seen.clear()
    for record in findings.differs:  # DVC's checkout trusts a file whose size and time are as it left them
        if all(cache.state(md5) == "ok" for md5 in [record.md5, *_listing(cache, record.md5)]):
            print(f"repair: {record.path} checked out of the cache again", flush=True)
            path = Path(record.path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    outputs = [r.path for r in findings.differs] + [item["path"] for stage in findings.damaged
                                                   for item in lock["stages"][stage].get("outs", [])]
    if outputs:
        dvc("checkout", "--quiet", "--force", *dict.fromkeys(outputs))


def _listing(cache: Cache, md5: str) -> list[str]:
    """The md5s of a folder object's files (none for a file, or a listing that is not whole)."""
    if not md5.endswith(".dir") or cache.state(md5) != "ok":
        return []
    return [item["md5"] for item in json.loads(cache.object(md5).read_text())]


def _outputs(lock: dict, stage: str, cache: Cache) -> list[str]:
    """Every object behind `stage`'s outputs in dvc.lock."""
    md5s = [item["md5"] for item in lock["stages"][stage].get("outs", []) if "md5" in item]
    return md5s + [m for md5 in md5s for m in _listing(cache, md5)]


def verify(fix: bool, quiet: bool = False) -> int:
    """Check the workspace and the cache against dvc.lock; repair if `fix`; return the exit
    status. `quiet`: say nothing unless something is damaged."""
    lock_path = Path("dvc.lock")
    if not lock_path.is_file():
        if quiet:  # nothing reproduced yet: nothing to check
            return 0
        raise StudyError("no dvc.lock here: run this in the project's root, after a `dvc repro`")
    lock, uncached = load_yaml(str(lock_path)), uncached_outputs(load_yaml("dvc.yaml"))
    cache = Cache(cache_dir())
    findings = inspect(lock, uncached, cache, quiet)
    if quiet and not findings.damaged and not findings.differs:
        return 0
    if findings.missing:
        print(f"{findings.missing} output(s) are not in the cache: not damage; `dvc pull` or `dvc repro` brings them")
    if not findings.damaged and not findings.differs:
        whole = sum(state == "ok" for state in cache.seen.values())
        print(f"nothing damaged: {whole} cache object(s) and the workspace's outputs hash as dvc.lock says")
        return 0
    if not fix:
        return 2
    repair(findings, cache, lock)
    cache.seen.clear()
    again = inspect(lock, uncached, cache, quiet)
    if again.damaged or again.differs:
        raise StudyError("some damage is left (above); remove those outputs and run `dvc repro`")
    print("repaired: the cache and the workspace now hash as dvc.lock says")
    return 0


@stage_main
def main() -> None:
    catch_signals()
    parser = argparse.ArgumentParser(prog="python -m initstudy.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-repair", action="store_true", help="only report what is damaged (exit status 2)")
    fix = not parser.parse_args().no_repair
    try:
        sys.exit(verify(fix))
    except Interrupted as exc:
        print("interrupted: what was repaired stays repaired; run `make verify` again to check the rest",
              file=sys.stderr)
        sys.exit(exit_status(exc.signum))


if __name__ == "__main__":
    main()
