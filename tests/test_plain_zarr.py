"""A store written by robot_rl reads with plain zarr, following only diffusion_policy's
`data/<key>` + `meta/episode_ends` convention (no robot_rl import in the reader)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from store_fixtures import episode_data, write_store

READER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import zarr

    root = zarr.open_group(sys.argv[1], mode="r")
    ends = root["meta/episode_ends"][:]
    starts = np.concatenate([[0], ends[:-1]])
    out = {}
    for key in ("obs.joint_pos", "obs.image.wrist", "action", "reward", "done", "timestamp"):
        arr = root["data"][key]
        for i, (s, e) in enumerate(zip(starts, ends)):
            out[f"{i}/{key}"] = arr[s:e]
    assert not any(m.startswith("robot_rl") for m in sys.modules), "reader imported robot_rl"
    np.savez(sys.argv[2], **out)
    """
)


def test_plain_zarr_reads_committed_episodes(tmp_path):
    path = tmp_path / "plain.zarr"
    write_store(path, 3)
    out = tmp_path / "read.npz"
    subprocess.run([sys.executable, "-I", "-c", READER, str(path), str(out)], check=True, cwd=tmp_path)
    got = np.load(out, allow_pickle=False)
    for i in range(3):
        for key, want in episode_data(i).items():
            np.testing.assert_array_equal(got[f"{i}/{key}"], want.astype(got[f"{i}/{key}"].dtype), err_msg=f"{i}/{key}")
