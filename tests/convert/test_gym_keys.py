"""raygym.convert.gym_keys: the tables name real raygym models and losses, and give each Gym
key exactly one fate."""

from __future__ import annotations

from raygym.convert.gym_keys import (
    DIRECT_KEYS,
    GYM_LOSSES,
    GYM_MODELS,
    HANDLED_KEYS,
    KNOWN_GYM_KEYS,
    NOT_CARRIED,
    SIMPLE_NET_IGNORED,
    UNET_KEYS,
)
from raygym.models import list_models
from raygym.train.losses import LOSS_REGISTRY


def test_mapped_names_exist_in_raygym() -> None:
    assert set(GYM_MODELS.values()) <= set(list_models())
    assert set(GYM_LOSSES.values()) <= set(LOSS_REGISTRY)


def test_each_gym_key_has_one_fate() -> None:
    direct, handled, dropped = set(DIRECT_KEYS), set(HANDLED_KEYS), set(NOT_CARRIED)
    assert not direct & handled and not direct & dropped and not handled & dropped
    assert KNOWN_GYM_KEYS == sorted(direct | handled | dropped)
    assert set(UNET_KEYS) <= direct
    assert set(SIMPLE_NET_IGNORED) <= set(UNET_KEYS)
    assert all(path.split(".")[0] in {"model", "train", "data"}
               for path, _ in DIRECT_KEYS.values())
