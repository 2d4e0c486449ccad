"""Learning-rate schedules: Gym's reference table, cosine endpoints, registry, optimizer update."""

from __future__ import annotations

import pytest
import torch

from raygym.train.schedule import (
    SCHEDULES,
    build_lr_schedule,
    constant_lr,
    cosine_lr,
    ramp_sustain_decay_lr,
    set_lr,
)

GYM = dict(start_lr=1e-7, min_lr=1e-7, max_lr=1e-4, rampup_epochs=20, sustain_epochs=0,
           exp_decay=0.9)


@pytest.mark.parametrize(
    ("epoch", "expected"), [(0, 1e-7), (10, 5.0e-5), (20, 1e-4), (30, 3.5e-5), (60, 1.6e-6)]
)
def test_gym_reference_table(epoch: int, expected: float) -> None:
    assert ramp_sustain_decay_lr(epoch, **GYM) == pytest.approx(expected, rel=2e-2)


def test_ramp_sustain_decay_exact_formula() -> None:
    params = dict(GYM, sustain_epochs=5)
    assert ramp_sustain_decay_lr(10, **params) == pytest.approx((1e-4 - 1e-7) / 20 * 10 + 1e-7)
    assert ramp_sustain_decay_lr(20, **params) == 1e-4
    assert ramp_sustain_decay_lr(24, **params) == 1e-4  # still sustaining
    assert ramp_sustain_decay_lr(27, **params) == pytest.approx((1e-4 - 1e-7) * 0.9**2 + 1e-7)
    # no ramp: starts at the decay from max_lr, no division by zero
    assert ramp_sustain_decay_lr(0, **dict(GYM, rampup_epochs=0)) == pytest.approx(1e-4)


def test_cosine_endpoints_and_warmup() -> None:
    kw = dict(max_lr=1e-3, min_lr=1e-5, max_epochs=12, warmup_epochs=2)
    assert cosine_lr(0, **kw) == pytest.approx(5e-4)
    assert cosine_lr(1, **kw) == pytest.approx(1e-3)
    assert cosine_lr(2, **kw) == pytest.approx(1e-3)
    assert cosine_lr(11, **kw) == pytest.approx(1e-5)  # last epoch reaches min_lr
    assert cosine_lr(50, **kw) == pytest.approx(1e-5)
    # no warm-up, 11 epochs: t = 5 / 10 at epoch 5 -> halfway between max and min
    assert cosine_lr(5, max_lr=1.0, min_lr=0.0, max_epochs=11) == pytest.approx(0.5)
    lrs = [cosine_lr(e, **kw) for e in range(2, 12)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_constant() -> None:
    assert constant_lr(0, lr=3e-4) == constant_lr(99, lr=3e-4) == 3e-4


def test_build_lr_schedule_registry() -> None:
    fn = build_lr_schedule("gym", **GYM)
    assert fn(30) == pytest.approx(ramp_sustain_decay_lr(30, **GYM))
    assert build_lr_schedule("Cosine", max_lr=1.0, min_lr=0.0, max_epochs=3)(2) == 0.0
    assert {"ramp_sustain_decay", "cosine", "constant"} <= set(SCHEDULES)


def test_build_lr_schedule_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown lr schedule 'step'.*constant.*cosine"):
        build_lr_schedule("step", lr=1.0)
    with pytest.raises(ValueError, match=r"expected parameters: max_lr, min_lr, max_epochs"):
        build_lr_schedule("cosine", max_lr=1.0)
    with pytest.raises(ValueError, match="expected parameters: lr"):
        build_lr_schedule("constant", lr=1.0, gamma=0.5)
    with pytest.raises(ValueError, match="exp_decay"):
        build_lr_schedule("gym", **dict(GYM, exp_decay=1.5))
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        ramp_sustain_decay_lr(-1, **GYM)


def test_set_lr_updates_every_param_group() -> None:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 5.0}], lr=1.0)
    fn = build_lr_schedule("gym", **GYM)
    set_lr(opt, fn(10))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([fn(10), fn(10)])


def test_warmup_problem_is_what_the_schedules_need() -> None:
    from raygym.train.schedule import warmup_problem

    # cosine_lr raises past this bound; the config refuses the same bound when it loads
    assert warmup_problem("cosine", 12, 12) is None
    cosine_lr(11, max_lr=1.0, min_lr=0.0, max_epochs=12, warmup_epochs=12)
    problem = warmup_problem("cosine", 12, 20)
    assert problem is not None and "at most 12" in problem and "at least 20" in problem
    with pytest.raises(ValueError, match="warmup_epochs <= max_epochs"):
        cosine_lr(0, max_lr=1.0, min_lr=0.0, max_epochs=12, warmup_epochs=20)
    # gym would run, but a 20-epoch ramp in 12 epochs never reaches max_lr
    assert ramp_sustain_decay_lr(11, **GYM) < 0.6 * GYM["max_lr"]
    assert warmup_problem("gym", 12, 20) is not None
    assert warmup_problem("constant", 1, 20) is None


def test_the_encoder_group_gets_its_share_of_the_rate() -> None:
    """gym and smp networks: the encoder's parameters in a group of their own with
    ``lr_scale``; ``set_lr`` gives it that share while ``scaled``, the rest the full rate."""
    import torch

    from raygym.models import build_model
    from raygym.train.schedule import LR_SCALE, parameter_groups, set_lr

    for arch, params in (("gym_resunet", {"filters": 2}), ("simple_unet", {"filters": 2}),
                         ("unet", {"encoder": "resnet18", "encoder_depth": 3,
                                   "decoder_channels": [16, 8, 4]})):
        model = build_model(arch, in_channels=3, num_classes=2, **params)
        [whole] = parameter_groups(model, 1.0)
        assert len(whole["params"]) == len(list(model.parameters()))
        rest, encoder = parameter_groups(model, 0.1)
        assert encoder[LR_SCALE] == 0.1 and LR_SCALE not in rest, arch
        assert len(rest["params"]) + len(encoder["params"]) == len(whole["params"])
        assert encoder["params"] and rest["params"], arch
        optimizer = torch.optim.Adam([rest, encoder], lr=1.0)
        set_lr(optimizer, 1e-3)
        assert [g["lr"] for g in optimizer.param_groups] == [1e-3, pytest.approx(1e-4)]
        set_lr(optimizer, 1e-3, scaled=False)  # past train.encoder_lr_epochs
        assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3]
