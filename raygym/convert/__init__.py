"""``raygym convert-config``: a Segmentation Gym JSON config -> a raygym experiment YAML.

Every Gym key either maps to one raygym key (validated with the experiment schema before
anything is written) or is reported as *not carried over*, with the reason, in the returned
list and in the YAML's header comment. A Gym value that raygym rejects fails with a
:class:`~raygym.errors.ConfigError` naming both the Gym key and the raygym key.

Choices where Gym and raygym differ (each is also written as a comment into the YAML):

* Gym has no test split: ``data.split.test`` is 0.0 (Gym's semantics), with a comment
  recommending one.
* Gym has no class names: ``class_0`` .. ``class_{K-1}`` unless the JSON has ``CLASSES`` or
  ``CLASS_NAMES`` (a list, or a ``{"0": "water"}`` mapping). ``NCLASSES: 1`` (Gym's binary
  mode) becomes two classes.
* ``N_DATA_BANDS`` is informational (raygym reads the band count from the images); above 3,
  Gym read each extra band from its own folder, so placeholder ``extra_bands`` folders
  ``band_4/`` .. are written.
* Gym's ``simple_unet`` / ``simple_resunet`` always used 2x2 kernels and no strides, so
  ``KERNEL`` / ``STRIDE`` are not carried over for them (``model.kernel: 2``); ``segformer``
  uses none of Gym's UNet keys.

The package: :mod:`.gym_keys` (what each Gym key becomes), :mod:`.mapping` (the conversion
and its error messages), :mod:`.yaml_out` (the commented YAML), :mod:`.command` (read,
convert, write).
"""

from raygym.convert.command import convert_gym_config, gym_to_raw
from raygym.convert.gym_keys import GYM_LOSSES, GYM_MODELS

__all__ = ["GYM_LOSSES", "GYM_MODELS", "convert_gym_config", "gym_to_raw"]
