"""raygym.convert.gym_keys: the tables name real raygym models and losses, and give each Gym
key exactly one fate."""

from __future__ import annotations

from raygym.convert import gym_keys as keys
from raygym.models import list_models
from raygym.train.losses import LOSS_REGISTRY


def test_mapped_names_exist_in_raygym() -> None:
    assert set(keys.GYM_MODELS.values()) <= set(list_models())
    assert set(keys.GYM_LOSSES.values()) <= set(LOSS_REGISTRY)


def test_each_gym_key_has_one_fate() -> None:
    direct, handled, dropped = set(keys.DIRECT_KEYS), set(keys.HANDLED_KEYS), set(keys.NOT_CARRIED)
    assert not direct & handled and not direct & dropped and not handled & dropped
    assert keys.KNOWN_GYM_KEYS == sorted(direct | handled | dropped)
    assert set(keys.UNET_KEYS) <= direct
    assert set(keys.SIMPLE_NET_IGNORED) <= set(keys.UNET_KEYS)
    assert all(path.split(".")[0] in {"model", "train", "data"}
               for path, _ in keys.DIRECT_KEYS.values())
