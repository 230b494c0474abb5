from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data import KeySpec, SchemaError, StoreSchema
from store_fixtures import small_schema


def good_step():
    return {
        "obs.joint_pos": np.zeros(7, np.float32),
        "obs.image.wrist": np.zeros((24, 32, 3), np.uint8),
        "action": np.zeros(7),
        "timestamp": 0.0,
    }


def test_build_adds_builtin_keys_and_roundtrips_json():
    schema = small_schema()
    assert {"reward", "done", "timestamp", "action", "obs.joint_pos", "obs.image.wrist"} == set(schema.keys)
    assert schema.image_keys == ["obs.image.wrist"]
    assert StoreSchema.from_json(schema.to_json()) == schema


def test_validate_casts_safely_and_fills_defaults():
    out = small_schema().validate_step(good_step())
    assert out["action"].dtype == np.float32 and out["action"].shape == (7,)
    assert out["reward"].shape == () and out["reward"] == 0.0
    assert out["done"].dtype == np.bool_ and not out["done"]


def test_validate_copies_input():
    step = good_step()
    out = small_schema().validate_step(step)
    step["obs.joint_pos"][0] = 99.0
    assert out["obs.joint_pos"][0] == 0.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.pop("obs.joint_pos"), "missing key 'obs.joint_pos'"),
        (lambda s: s.update(action=np.zeros(6)), "key 'action': got shape (6,)"),
        (lambda s: s.update({"obs.image.wrist": np.zeros((24, 32, 3), np.float32)}), "key 'obs.image.wrist'"),
        (lambda s: s.update(action=np.array([0, 0, np.nan, 0, 0, 0, 0.0])), "non-finite value nan at flat index 2"),
        (lambda s: s.update(reward=np.inf), "key 'reward': non-finite"),
        (lambda s: s.update(extra=1.0), "unknown key"),
        (lambda s: s.update(done=2), "key 'done'"),
        (lambda s: s.update(action="abc"), "key 'action'"),
    ],
)
def test_validate_rejects_bad_steps_naming_the_key(mutate, message):
    step = good_step()
    mutate(step)
    with pytest.raises(SchemaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        small_schema().validate_step(step)


def test_schema_errors():
    with pytest.raises(SchemaError, match="no observation key"):
        StoreSchema.build(obs={}, action=KeySpec((2,), "float32"), fps=10)
    with pytest.raises(SchemaError, match="fps"):
        StoreSchema.build(obs={"x": KeySpec((1,), "float32")}, action=KeySpec((2,), "float32"), fps=0)
    with pytest.raises(SchemaError, match="invalid key name"):
        StoreSchema.build(obs={"a/b": KeySpec((1,), "float32")}, action=KeySpec((2,), "float32"), fps=10)
    with pytest.raises(SchemaError, match="names has 2 entries"):
        KeySpec((3,), "float32", names=("a", "b"))
    with pytest.raises(SchemaError, match="not supported"):
        KeySpec((3,), "complex64")
    with pytest.raises(SchemaError, match="version"):
        StoreSchema.from_json({"schema_version": 99, "keys": {}, "fps": 1})


def test_image_detection():
    assert KeySpec((8, 8, 3), "uint8").is_image
    assert not KeySpec((8, 8, 3), "float32").is_image
    assert not KeySpec((8, 8), "uint8").is_image
