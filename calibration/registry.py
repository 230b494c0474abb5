"""Versioned calibration results, one YAML file per version, per kind and id::

    <root>/<kind>/<id>/v<N>.yaml        kind: intrinsics | handeye | joints

``root`` is ``$ROBOT_RL_CALIBRATION_DIR`` (default ``~/.robot_rl/calibration``). Each
file holds ``version``, ``created`` (UTC ISO 8601), ``kind``, ``id`` and the data; an
intrinsics file is also a ROS camera_info YAML (``load_camera_info`` reads it). A new
calibration never overwrites an old one: ``save_calibration`` writes the next version
(temp file, then an exclusive hard link, so two writers never get the same number).

A *reference* names one file: ``intrinsics/wrist/v3``, or ``intrinsics/wrist`` for the
latest. The recorder stores the resolved references in each store and episode.

    from robot_rl.calibration.registry import load_calibration, save_calibration
    path = save_calibration("joints", "so101_follower", {"names": [...], "offsets": [...], "signs": [...]})
    doc = load_calibration("joints", "so101_follower")          # latest version
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from robot_rl.calibration.camera_info import CalibrationError

KINDS = ("intrinsics", "handeye", "joints")
ENV_DIR = "ROBOT_RL_CALIBRATION_DIR"
RESERVED = ("version", "created", "kind", "id")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_FILE_RE = re.compile(r"^v([0-9]+)\.yaml$")


def calibration_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else ``$ROBOT_RL_CALIBRATION_DIR``, else ``~/.robot_rl/calibration``."""
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get(ENV_DIR) or "~/.robot_rl/calibration").expanduser()


def _check(kind: str, id: str) -> None:
    if kind not in KINDS:
        raise CalibrationError(f"calibration kind {kind!r} is not one of {KINDS}")
    if not isinstance(id, str) or not _ID_RE.match(id) or id in (".", ".."):
        raise CalibrationError(f"calibration id {id!r}: use letters, digits, '_', '.', '-' (e.g. the camera or robot name)")


def versions(kind: str, id: str, root: str | os.PathLike[str] | None = None) -> list[int]:
    """The saved versions of ``kind``/``id``, ascending (empty when none)."""
    _check(kind, id)
    folder = calibration_root(root) / kind / id
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _FILE_RE.match(p.name)))


def calibration_path(kind: str, id: str, version: int | None = None, root: str | os.PathLike[str] | None = None) -> Path:
    """The file of ``kind``/``id`` at ``version`` (default: the latest); CalibrationError
    saying how to create it when there is none."""
    found = versions(kind, id, root)
    folder = calibration_root(root) / kind / id
    if not found:
        raise CalibrationError(
            f"no {kind} calibration for {id!r} in {folder.parent}; run `robot-rl calibrate {kind} ...` first"
        )
    if version is None:
        version = found[-1]
    if version not in found:
        raise CalibrationError(f"{kind} calibration {id!r} has no version {version} in {folder} (versions: {found})")
    return folder / f"v{version}.yaml"


def save_calibration(kind: str, id: str, data: Mapping[str, Any], root: str | os.PathLike[str] | None = None) -> Path:
    """Write ``data`` as the next version of ``kind``/``id``; returns its path.

    ``data`` must be YAML-safe (plain dicts, lists, str, numbers, bools) and may not use
    the reserved keys ``version``, ``created``, ``kind``, ``id``.
    """
    _check(kind, id)
    clash = sorted(set(data) & set(RESERVED))
    if clash:
        raise CalibrationError(f"calibration data may not set the reserved key(s) {clash}")
    folder = calibration_root(root) / kind / id
    folder.mkdir(parents=True, exist_ok=True)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    tmp = folder / f".tmp-{os.getpid()}-{id}.yaml"
    try:
        for _ in range(100):
            version = (versions(kind, id, root) or [0])[-1] + 1
            doc = {"version": version, "created": created, "kind": kind, "id": id, **dict(data)}
            try:
                text = yaml.safe_dump(doc, sort_keys=False)
            except yaml.YAMLError as exc:
                raise CalibrationError(f"{kind}/{id}: data is not YAML-safe: {exc}") from exc
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            target = folder / f"v{version}.yaml"
            try:
                os.link(tmp, target)  # atomic and exclusive: fails if another writer took this number
            except FileExistsError:
                continue
            return target
        raise CalibrationError(f"{folder}: could not reserve a new version number (too many concurrent writers?)")
    finally:
        tmp.unlink(missing_ok=True)


def load_calibration(
    kind: str, id: str, version: int | None = None, root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The document of ``kind``/``id`` at ``version`` (default: the latest), checked: a
    mapping whose ``kind``, ``id`` and ``version`` match its place. CalibrationError
    naming the file otherwise."""
    path = calibration_path(kind, id, version, root)
    return read_calibration_file(path, kind=kind, id=id, version=int(path.stem[1:]))


def read_calibration_file(
    path: str | os.PathLike[str], kind: str | None = None, id: str | None = None, version: int | None = None
) -> dict[str, Any]:
    """A calibration YAML file, checked against the expected ``kind`` (and ``id``,
    ``version`` when given)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CalibrationError(f"{path}: cannot read calibration file: {exc}") from exc
    if not isinstance(doc, dict):
        raise CalibrationError(f"{path}: not a calibration YAML mapping (got {type(doc).__name__})")
    missing = [k for k in RESERVED if k not in doc]
    if missing:
        raise CalibrationError(f"{path}: malformed calibration file, missing {missing}")
    if kind is not None and doc["kind"] != kind:
        raise CalibrationError(f"{path}: is a {doc['kind']!r} calibration, expected {kind!r}")
    if id is not None and doc["id"] != id:
        raise CalibrationError(f"{path}: belongs to id {doc['id']!r}, expected {id!r}")
    if version is not None and doc["version"] != version:
        raise CalibrationError(f"{path}: says version {doc['version']!r} but is stored as v{version}")
    doc["path"] = str(path)
    return doc


def parse_ref(ref: str) -> tuple[str, str, int | None]:
    """``"intrinsics/wrist/v3"`` -> ("intrinsics", "wrist", 3); ``"intrinsics/wrist"`` -> (..., None)."""
    parts = ref.strip().strip("/").split("/")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not re.fullmatch(r"v[0-9]+", parts[2])):
        raise CalibrationError(f"calibration reference {ref!r}: expected KIND/ID or KIND/ID/vN, e.g. intrinsics/wrist/v3")
    kind, id = parts[0], parts[1]
    _check(kind, id)
    return kind, id, int(parts[2][1:]) if len(parts) == 3 else None


def resolve_ref(ref: str, root: str | os.PathLike[str] | None = None) -> str:
    """The versioned form of ``ref`` (latest version when it names none), checked to load."""
    kind, id, version = parse_ref(ref)
    doc = load_calibration(kind, id, version, root)
    return f"{kind}/{id}/v{doc['version']}"



def intrinsics_file(ref: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The checked intrinsics file of ``ref``: an id (latest version), ``<id>/vN`` or
    ``intrinsics/<id>[/vN]``."""
    text = ref.strip().strip("/")
    if not text.startswith("intrinsics/"):
        text = f"intrinsics/{text}"
    kind, id, version = parse_ref(text)
    path = calibration_path(kind, id, version, root)
    read_calibration_file(path, kind="intrinsics", id=id, version=int(path.stem[1:]))
    return path


def load_intrinsics(id_or_path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None):  # -> CameraIntrinsics
    """Camera intrinsics from a camera_info YAML path (``*.yaml``) or a registry reference
    (see :func:`intrinsics_file`)."""
    from robot_rl.calibration.camera_info import load_camera_info

    text = str(id_or_path)
    if text.endswith((".yaml", ".yml")):
        return load_camera_info(text)
    return load_camera_info(intrinsics_file(text, root))
