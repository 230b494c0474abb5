"""Security (docs/security.md): checkpoints and weight messages are never unpickled; stores
that declare a data type, codec or layout robot_rl does not write are refused before a
chunk is read; the SROS2 launch option sets the security environment and enclaves, and
fails closed where DDS security is not available."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from robot_rl.algos.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robot_rl.data import CorruptStoreError, EpisodeStore
from robot_rl.data.verify import verify
from store_fixtures import write_store

BIN = Path(sys.executable).parent / "robot-rl"
PACKAGE = Path(__file__).resolve().parent.parent / "robot_rl"


class Canary:
    """Unpickling this writes ``path``: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.path, "unpickled"))


def pickle_payload(canary: Path) -> bytes:
    return pickle.dumps({"model": Canary(canary)})


def torch_payload(canary: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "hook": Canary(canary)}, buf)  # a zip holding data.pkl
    return buf.getvalue()


def test_the_payloads_are_live(tmp_path):
    """Control: each payload really runs code when unpickled, so 'no canary' below means
    it was never unpickled."""
    canary = tmp_path / "canary"
    pickle.loads(pickle_payload(canary))
    assert canary.read_text() == "unpickled"
    canary.unlink()
    torch.load(io.BytesIO(torch_payload(canary)), weights_only=False)
    assert canary.exists()


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real (small) BC training checkpoint: config.json, model/resume safetensors."""
    from robot_rl.algos import LearnerSpec, OfflineData, make_config, make_learner

    root = tmp_path_factory.mktemp("security")
    write_store(root / "tiny.zarr", 2, image=False)
    store = EpisodeStore(root / "tiny.zarr")
    spec = LearnerSpec.from_schema(store.schema, ["joint_pos"], 1)
    data = OfflineData(store, spec, rewards="success", with_next=False)
    learner = make_learner("bc", spec, data.normalizer, make_config("bc", {"hidden": [16, 16]}), seed=0)
    ck = save_checkpoint(root / "ck", learner, resume={"step": 0})
    assert load_checkpoint(ck, resume=True).learner.name == "bc"
    return ck


def _rehash(ck: Path) -> None:
    """An attacker who can write the file can also write its sha256 into config.json."""
    import hashlib

    config = json.loads((ck / "config.json").read_text())
    config["model_sha256"] = hashlib.sha256((ck / "model.safetensors").read_bytes()).hexdigest()
    (ck / "config.json").write_text(json.dumps(config))


def plant(checkpoint: Path, dest: Path, how: str, canary: Path) -> tuple[Path, bool]:
    """Copy ``checkpoint`` to ``dest`` with a malicious pickle planted as ``how``.
    Returns the directory and whether loading it needs ``resume=True``."""
    if how == "pickle_files_alone":
        dest.mkdir()
        (dest / "model.pt").write_bytes(torch_payload(canary))
        (dest / "model.pkl").write_bytes(pickle_payload(canary))
        return dest, False
    shutil.copytree(checkpoint, dest)
    if how == "model_pickle":  # the sha256 in config.json no longer matches
        (dest / "model.safetensors").write_bytes(pickle_payload(canary))
    elif how == "model_pickle_rehashed":
        (dest / "model.safetensors").write_bytes(pickle_payload(canary))
        _rehash(dest)
    elif how == "model_torch_save_rehashed":
        (dest / "model.safetensors").write_bytes(torch_payload(canary))
        _rehash(dest)
    elif how == "resume_pickle":
        (dest / "resume.safetensors").write_bytes(pickle_payload(canary))
        return dest, True
    elif how == "resume_torch_save":
        (dest / "resume.safetensors").write_bytes(torch_payload(canary))
        return dest, True
    return dest, False


PLANTED = {
    "model_pickle": r"model\.safetensors does not match the sha256 in config\.json",
    "model_pickle_rehashed": r"model\.safetensors cannot be read: .*\(the file is a Python pickle: .*never unpickles\)",
    "model_torch_save_rehashed": r"model\.safetensors cannot be read: .*the torch\.save format.*never unpickles",
    "resume_pickle": r"resume state cannot be read: .*Python pickle",
    "resume_torch_save": r"resume state cannot be read: .*torch\.save format",
    "pickle_files_alone": r"has no config\.json: .*\(model\.pkl, model\.pt: pickle-based files are never loaded\)",
}


@pytest.mark.parametrize("how", list(PLANTED))
def test_load_checkpoint_refuses_planted_pickles(checkpoint, tmp_path, how):
    canary = tmp_path / "canary"
    ck, resume = plant(checkpoint, tmp_path / "ck", how, canary)
    with pytest.raises(CheckpointError, match=PLANTED[how]):
        load_checkpoint(ck, resume=resume)
    assert not canary.exists()


@pytest.mark.parametrize("how", ["model_pickle_rehashed", "model_torch_save_rehashed", "pickle_files_alone"])
def test_eval_cli_refuses_planted_pickles(checkpoint, tmp_path, how, capsys):
    from robot_rl.cli import main

    canary = tmp_path / "canary"
    ck, _ = plant(checkpoint, tmp_path / "ck", how, canary)
    assert main(["eval", str(ck), "--episodes", "1", "--task", "sim_lift"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robot-rl eval: error: ") and re.search(PLANTED[how], err), err
    assert not canary.exists()


@pytest.mark.parametrize("how", ["model_pickle_rehashed", "pickle_files_alone"])
def test_deploy_cli_refuses_planted_pickles(checkpoint, tmp_path, how, capsys):
    """deploy checks config.json itself, then the policy node refuses the weights before
    it creates a publisher; the launch ends with its non-zero code."""
    from robot_rl.cli import main

    canary = tmp_path / "canary"
    ck, _ = plant(checkpoint, tmp_path / "ck", how, canary)
    code = main(["deploy", str(ck), "--robot", "mock_arm", "--episodes", "1"])
    out = capsys.readouterr()
    assert code != 0
    text = out.out + out.err
    if how == "pickle_files_alone":
        assert code == 2 and "robot-rl deploy: error:" in out.err and re.search(PLANTED[how], out.err)
    else:
        assert "refusing checkpoint" in text and "Python pickle" in text and "never unpickles" in text, text[-3000:]
    assert not canary.exists()


def test_policy_node_refuses_pickled_weight_messages(checkpoint, tmp_path):
    """The weights topic carries safetensors bytes; a pickle (or torch.save zip) published
    there is refused by the validation the policy node runs before a swap."""
    pytest.importorskip("rclpy")
    from safetensors.torch import save

    from robot_rl.ros.policy_node import WeightSwapper

    @dataclass
    class Value:
        value: object

    class Node:  # the parts of PolicyNode that _validate reads
        spec = None

        def get_parameter(self, name):
            return Value(0)

    learner = load_checkpoint(checkpoint).learner
    swapper = WeightSwapper.__new__(WeightSwapper)  # no ROS: only the validation step
    swapper.node, swapper._template = Node(), learner
    assert swapper._validate(save(learner.state_dict())) is not learner  # control: real weights pass
    canary = tmp_path / "canary"
    for payload in (pickle_payload(canary), torch_payload(canary)):
        with pytest.raises(Exception, match="deserializ"):
            swapper._validate(payload)
    assert not canary.exists()


UNPICKLERS = re.compile(
    r"torch\.load\(|pickle\.loads?\(|import pickle|allow_pickle\s*=\s*True|yaml\.(unsafe_)?load\(|"
    r"marshal\.loads?\(|import (dill|cloudpickle|shelve)|joblib\.load\("
)


def test_the_package_has_no_unpickling_loader():
    """robot_rl reads weights with safetensors, metadata with json / yaml.safe_load and
    arrays with np.load(allow_pickle=False): no call that can unpickle."""
    hits = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for root in (PACKAGE, *(PACKAGE.parent / d for d in ("calibration", "drivers", "sim")))  # robot_rl.<d> (pyproject package-dir)
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if UNPICKLERS.search(line)
    ]
    assert hits == []


# ---------------------------------------------------------------------- stores
@pytest.fixture
def store(store_path):
    write_store(store_path, 2, image=False)
    assert EpisodeStore(store_path).verify().ok
    return store_path


def edit_meta(store: Path, array: str, change) -> None:
    path = store / array / "zarr.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _set(**fields):
    return lambda meta: meta.update(fields)


def _add_codec(codec):
    return lambda meta: meta["codecs"].insert(1, codec)


V3_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}
STORE_EDITS = {  # name: (array, edit of its zarr.json, CorruptStoreError.key, reason in the message)
    "vlen_string_data": (
        "data/action", _set(data_type="string", fill_value="", codecs=[{"name": "vlen-utf8"}]),
        "action", "declares data type 'string'; robot_rl writes 'float32'",
    ),
    "object_bytes_records": (
        "meta/episodes", _set(data_type="bytes", fill_value="", codecs=[{"name": "vlen-bytes"}]),
        "meta/episodes", "declares data type 'bytes'; robot_rl writes 'string'",
    ),
    "structured_dtype": (
        "meta/episode_ends", _set(data_type={"name": "structured", "configuration": {}}),
        "meta/episode_ends", "declares data type",
    ),
    "pickle_codec": (
        "data/action", _add_codec({"name": "numcodecs.pickle"}),
        "action", "uses codec 'numcodecs.pickle', which robot_rl does not read",
    ),
    "pickle_codec_records": (
        "meta/episodes", _add_codec({"name": "numcodecs.pickle"}),
        "meta/episodes", "uses codec 'numcodecs.pickle'",
    ),
    "unknown_codec": (
        "data/obs.joint_pos", _add_codec({"name": "evil_plugin"}),
        "obs.joint_pos", "uses codec 'evil_plugin'",
    ),
    "known_but_unwritten_codec": (
        "meta/episode_ends", _add_codec({"name": "gzip", "configuration": {"level": 1}}),
        "meta/episode_ends", "uses codec 'gzip'",
    ),
    "storage_transformer": (
        "data/reward", _set(storage_transformers=[{"name": "anything"}]),
        "reward", "declares storage transformers",
    ),
    "chunk_key_encoding": (
        "data/done", _set(chunk_key_encoding={"name": "v2", "configuration": {"separator": "."}}),
        "done", "chunk key encoding",
    ),
}  # fmt: skip


@pytest.mark.parametrize("edit", list(STORE_EDITS))
def test_stores_with_unwritten_types_or_codecs_are_refused(store, edit, monkeypatch):
    import zarr

    array, change, key, reason = STORE_EDITS[edit]
    edit_meta(store, array, change)

    def no_chunk_reads(*args, **kwargs):
        raise AssertionError("a chunk was read before the metadata was checked")

    monkeypatch.setattr(zarr.Array, "__getitem__", no_chunk_reads)
    with pytest.raises(CorruptStoreError, match=re.escape(reason)) as info:
        EpisodeStore(store)
    assert info.value.key == key and "refusing to read it" in str(info.value)
    report = verify(store)
    assert not report.ok and any(reason in e for e in report.errors), report.errors


def _tree_digest(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("edit", ["pickle_codec", "pickle_codec_records", "unknown_codec", "storage_transformer"])
def test_appending_and_recovery_refuse_them_too(store, edit):
    """EpisodeWriter opening a store to append, and ``data recover``, check the same
    allow-list as the reader before touching a chunk, and change nothing on disk."""
    from robot_rl.data import EpisodeWriter
    from robot_rl.data.recovery import recover

    array, change, key, reason = STORE_EDITS[edit]
    original = (store / array / "zarr.json").read_bytes()
    edit_meta(store, array, change)
    before = _tree_digest(store)
    with pytest.raises(CorruptStoreError, match=re.escape(reason)) as info:
        EpisodeWriter(store)
    assert info.value.key == key
    with pytest.raises(CorruptStoreError, match=re.escape(reason)):
        recover(store)
    proc = subprocess.run([str(BIN), "data", "recover", str(store)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and reason in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert _tree_digest(store) == before
    # the refusing writer released its lock: with the metadata put back, appending works
    (store / array / "zarr.json").write_bytes(original)
    EpisodeWriter(store).close()
    assert len(EpisodeStore(store)) == 2


def test_zarr_v2_pickle_array_is_refused(store):
    """A zarr v2 array (.zarray) with numcodecs' pickle object codec in place of a v3 one."""
    folder = store / "data" / "action"
    (folder / "zarr.json").unlink()
    zarray = {
        "zarr_format": 2, "shape": [10], "chunks": [10], "dtype": "|O", "compressor": None, "fill_value": 0,
        "filters": [{"id": "pickle", "protocol": 5}], "order": "C",
    }  # fmt: skip
    (folder / ".zarray").write_text(json.dumps(zarray))
    with pytest.raises(CorruptStoreError, match=r"key 'action': array 'data/action' has zarr v2 metadata \(\.zarray\)"):
        EpisodeStore(store)
    assert not verify(store).ok


def test_a_registered_unpickling_codec_never_runs(store, tmp_path):
    """A codec plugin that unpickles chunk data (registered with zarr, as an installed
    package could): plain zarr runs it; EpisodeStore and verify refuse the store first."""
    import zarr
    from zarr.abc.codec import BytesBytesCodec
    from zarr.registry import register_codec

    @dataclass(frozen=True)
    class Unpickle(BytesBytesCodec):
        is_fixed_size = False

        @classmethod
        def from_dict(cls, data):
            return cls()

        def to_dict(self):
            return {"name": "robot_rl_test.unpickle"}

        async def _decode_single(self, chunk_bytes, chunk_spec):
            pickle.loads(chunk_bytes.to_bytes())
            return chunk_bytes

        async def _encode_single(self, chunk_bytes, chunk_spec):
            return chunk_bytes

        def compute_encoded_size(self, input_byte_length, chunk_spec):
            return input_byte_length

    register_codec("robot_rl_test.unpickle", Unpickle)
    canary = tmp_path / "canary"
    edit_meta(store, "data/action", _set(codecs=[V3_BYTES, {"name": "robot_rl_test.unpickle"}]))
    (store / "data" / "action" / "c" / "0" / "0").write_bytes(pickle_payload(canary))
    control = tmp_path / "control.zarr"
    shutil.copytree(store, control)

    with pytest.raises(CorruptStoreError, match="uses codec 'robot_rl_test.unpickle'"):
        EpisodeStore(store)
    assert not verify(store).ok
    proc = subprocess.run([str(BIN), "data", "verify", str(store)], capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "uses codec 'robot_rl_test.unpickle'" in output, output
    assert not canary.exists()

    with pytest.raises(Exception):  # control: plain zarr decodes with it (and fails after)
        zarr.open_array(str(control / "data" / "action"), mode="r")[:]
    assert canary.exists()


def test_symlinks_out_of_the_store_fail_verify(store, tmp_path):
    """zarr.json names no paths (key names cannot hold '/' or start with '.'); a symlink on
    disk is the one way out of the store, and verify reports it."""
    chunk = store / "data" / "action" / "c" / "0" / "0"
    outside = tmp_path / "elsewhere"
    outside.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(outside)
    report = verify(store)
    assert not report.ok and any("symlink(s) lead outside the store" in e for e in report.errors), report.errors
    inside = store / "data" / "action" / "c" / "0" / "copy"
    inside.symlink_to(store / "data" / "reward" / "c" / "0")
    assert sum("lead outside" in e for e in verify(store).errors) == 1  # links within the store are not flagged


# ---------------------------------------------------------------------- SROS2 launch option
LAUNCHES = {
    "sim.launch.yaml": {},
    "record.launch.yaml": {"out": "/tmp/x.zarr", "camera": "true"},
    "deploy.launch.yaml": {"checkpoint": "/ck", "record": "true", "out": "/tmp/d.zarr", "camera": "true"},
    "finetune.launch.yaml": {"checkpoint": "/ck", "out": "/tmp/ft", "intervene": "true"},
}
SECURITY_ENV = ("ROS_SECURITY_ENABLE", "ROS_SECURITY_STRATEGY", "ROS_SECURITY_KEYSTORE")


def _enclave(proc) -> str:
    cmd = proc.cmd
    assert "--enclave" in cmd[cmd.index("--ros-args") :], cmd
    return cmd[cmd.index("--enclave") + 1]


@pytest.mark.parametrize("file", list(LAUNCHES))
def test_secure_launch_option_sets_security_env_and_enclaves(file):
    from robot_rl.launcher import plan, resolve_launch_file

    path = resolve_launch_file(file)
    secure = plan(path, {**LAUNCHES[file], "secure": "true", "keystore": "/etc/robot_rl/keystore"})
    assert len(secure) >= 2 or file == "sim.launch.yaml"
    for proc in secure:
        assert {k: proc.env.get(k) for k in SECURITY_ENV} == {
            "ROS_SECURITY_ENABLE": "true",
            "ROS_SECURITY_STRATEGY": "Enforce",
            "ROS_SECURITY_KEYSTORE": "/etc/robot_rl/keystore",
        }, proc.name
        assert _enclave(proc) == f"/robot_rl/{proc.name}"
    plain = plan(path, LAUNCHES[file])
    assert [p.name for p in plain] == [p.name for p in secure]
    for proc in plain:  # default: nothing set (an enclave alone is ignored by rcl without ROS_SECURITY_ENABLE)
        assert not set(SECURITY_ENV) & set(proc.env), proc.name
        assert _enclave(proc) == f"/robot_rl/{proc.name}"


ENCLAVE_FILES = ("cert.pem", "key.pem", "governance.p7s", "identity_ca.cert.pem", "permissions_ca.cert.pem", "permissions.p7s")  # fmt: skip


def _fake_enclave(keystore: Path, enclave: str) -> None:
    folder = keystore / "enclaves" / enclave.strip("/")
    folder.mkdir(parents=True)
    for name in ENCLAVE_FILES:
        (folder / name).write_text("")


@pytest.mark.parametrize("keystore", ["placeholder_files", "missing_enclave"])
def test_secure_launch_fails_closed(tmp_path, keystore):
    """secure:=true never brings a node up unsecured: with a keystore lacking the enclave, or
    (on this Fast DDS build, which has no security plugins) with any keystore, the robot
    node refuses to start and the launch ends non-zero before any action is sent."""
    ks = tmp_path / "keystore"
    ks.mkdir()
    if keystore == "placeholder_files":
        _fake_enclave(ks, "/robot_rl/robot")
    audit = tmp_path / "audit.txt"
    proc = subprocess.run(
        [str(BIN), "launch", "sim.launch.yaml", "robot:=mock_arm", "secure:=true", f"keystore:={ks}", f"audit_log:={audit}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    if keystore == "missing_enclave":  # rcl's check, whatever the DDS build
        assert "SECURITY ERROR" in output and "enclaves/robot_rl/robot" in output, output[-3000:]
    else:  # this build: "This Fast DDS version doesn't have the security libraries"; with them: bad certificates
        assert "security" in output.lower(), output[-3000:]
    assert not audit.exists() or audit.read_text() == ""
