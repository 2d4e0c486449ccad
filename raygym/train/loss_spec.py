"""Loss names, declared without torch: validating an experiment never imports torch (seconds
of CPU in every replayed trial's process and every ``raygym`` command that only reads a
config).

:data:`raygym.train.losses.LOSS_REGISTRY` builds them; a test keeps the two in step.
"""

from __future__ import annotations

LOSS_NAMES: tuple[str, ...] = ("dice", "cce", "cat", "kld", "focal", "tversky", "lovasz")
"""Every loss name a config may give (``cat`` is Gym's name for ``cce``)."""
