"""raygym.cluster.state: the cluster.json record and the token file (fast: nothing is
started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raygym.cluster.state import (
    STATE_FILE,
    ClusterError,
    cluster_info,
    forget_cluster,
    new_token,
    public_view,
    read_state,
    read_token,
    token_path,
    write_state,
)


def make_state(state_dir: Path, temp_dir: Path) -> dict[str, Any]:
    return {"cluster_id": "abc", "address": "127.0.0.1:1", "dashboard": "http://127.0.0.1:2",
            "state_dir": str(state_dir), "temp_dir": str(temp_dir), "session_dir": None,
            "nodes": [{"name": "head", "role": "head", "pid": 7, "pids": {"7": 1.5},
                       "cmd": ["ray", "start"], "log": "head.log"}]}


def test_round_trip_and_missing(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    state = make_state(tmp_path, tmp_path / "raygym-x")
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temp file left beside


def test_unreadable_state_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(ClusterError, match="unreadable cluster state") as info:
        read_state(tmp_path)
    assert "delete the file" in str(info.value)


def test_public_view_leaves_out_bookkeeping(tmp_path: Path) -> None:
    view = public_view(make_state(tmp_path, tmp_path / "t"))
    assert view["state_file"] == str(tmp_path / STATE_FILE)
    assert view["token_file"] == str(token_path(tmp_path))
    assert view["nodes"] == [{"name": "head", "role": "head", "pid": 7, "log": "head.log"}]


def test_cluster_info_is_the_public_view(tmp_path: Path) -> None:
    assert cluster_info(tmp_path) is None
    state = make_state(tmp_path, tmp_path / "t")
    write_state(tmp_path, state)
    assert cluster_info(tmp_path) == public_view(state)


def test_forget_cluster_removes_only_its_own_folder(tmp_path: Path) -> None:
    ours, other, kept = tmp_path / "raygym-abc", tmp_path / "precious", tmp_path / "raygym-k"
    for folder in (ours, other, kept):
        folder.mkdir()
    for folder, keep in ((ours, False), (other, False), (kept, True)):
        write_state(tmp_path, make_state(tmp_path, folder))
        forget_cluster(tmp_path, make_state(tmp_path, folder), keep_temp=keep)
        assert read_state(tmp_path) is None
    assert not ours.exists() and other.exists() and kept.exists()


def test_a_new_token_per_cluster_readable_by_its_user_only(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="no cluster auth token"):
        read_token(tmp_path)
    token_path(tmp_path).write_text("old")
    token_path(tmp_path).chmod(0o644)  # a looser file left behind is replaced, not reused
    token = new_token(tmp_path)
    assert len(token) == 64 and int(token, 16) >= 0
    assert read_token(tmp_path) == token != new_token(tmp_path)
    assert token_path(tmp_path).stat().st_mode & 0o777 == 0o600
    forget_cluster(tmp_path, make_state(tmp_path, tmp_path / "t"))
    assert not token_path(tmp_path).exists()
