"""What each Segmentation Gym config key becomes in raygym: a raygym key, special handling, or
*not carried over* with the reason. Tables only; :mod:`raygym.convert.mapping` applies them."""

from __future__ import annotations

GYM_MODELS: dict[str, str] = {
    "unet": "gym_unet",
    "resunet": "gym_resunet",
    "simple_unet": "simple_unet",
    "simple_resunet": "simple_resunet",
    "segformer": "segformer",
}
"""Gym ``MODEL`` value -> raygym ``model.arch``."""

GYM_LOSSES: dict[str, str] = {"dice": "dice", "cat": "cce", "cce": "cce", "kld": "kld"}
"""Gym ``LOSS`` value -> raygym ``loss.name``."""

DIRECT_KEYS: dict[str, tuple[str, str]] = {
    "KERNEL": ("model.kernel", "int"),
    "STRIDE": ("model.stride", "int"),
    "FILTERS": ("model.filters", "int"),
    "DROPOUT": ("model.dropout", "float"),
    "DROPOUT_CHANGE_PER_LAYER": ("model.dropout_change_per_layer", "float"),
    "DROPOUT_TYPE": ("model.dropout_type", "lower"),
    "USE_DROPOUT_ON_UPSAMPLING": ("model.dropout_on_upsampling", "bool"),
    "BATCH_SIZE": ("train.batch_size", "int"),
    "PATIENCE": ("train.patience", "int"),
    "MAX_EPOCHS": ("train.max_epochs", "int"),
    "RAMPUP_EPOCHS": ("train.rampup_epochs", "int"),
    "SUSTAIN_EPOCHS": ("train.sustain_epochs", "int"),
    "EXP_DECAY": ("train.exp_decay", "float"),
    "START_LR": ("train.start_lr", "float"),
    "MIN_LR": ("train.min_lr", "float"),
    "MAX_LR": ("train.max_lr", "float"),
    "VALIDATION_SPLIT": ("data.split.val", "float"),
    "AUG_ROT": ("data.augment.rotation", "float"),
    "AUG_ZOOM": ("data.augment.zoom", "float"),
    "AUG_WIDTHSHIFT": ("data.augment.width_shift", "float"),
    "AUG_HEIGHTSHIFT": ("data.augment.height_shift", "float"),
    "AUG_HFLIP": ("data.augment.hflip", "bool"),
    "AUG_VFLIP": ("data.augment.vflip", "bool"),
    "AUG_COPIES": ("data.augment.copies", "int"),
}
"""Gym key -> (raygym dotted key path, value kind) for the keys that carry over one to one.
Kinds: ``int`` (a whole float such as ``0.0`` becomes an int), ``float``, ``bool``, ``lower``
(a string, stripped and lower-cased)."""

UNET_KEYS: tuple[str, ...] = ("KERNEL", "STRIDE", "FILTERS", "DROPOUT",
                              "DROPOUT_CHANGE_PER_LAYER", "DROPOUT_TYPE",
                              "USE_DROPOUT_ON_UPSAMPLING")
"""Keys Gym's UNet-family builders read; which of them a given raygym model uses varies."""

SIMPLE_NET_IGNORED: dict[str, str] = {
    "KERNEL": "Gym's simple_unet/simple_resunet always used 2x2 kernels (model.kernel: 2)",
    "STRIDE": "Gym's simple_unet/simple_resunet have no strided convolutions (max pooling)",
}
"""UNet keys that Gym's simple_* networks ignored, and why."""

HANDLED_KEYS: frozenset[str] = frozenset({
    "TARGET_SIZE", "NCLASSES", "N_DATA_BANDS", "MODEL", "LOSS", "LOSS_WEIGHTS", "REMAP_CLASSES",
    "ROOT_STRING", "CLASSES", "CLASS_NAMES"})
"""Keys that are converted but map to no single raygym key."""

NOT_CARRIED: dict[str, str] = {
    "FILTER_VALUE": "label dilation radius; not supported by raygym",
    "HOT_START": "Keras weights cannot be loaded; train.init_weights starts from a raygym "
                 "model (runs/<name>/best)",
    "TESTTIMEAUG": "test-time augmentation is a prediction option: use `raygym predict --tta`",
    "SET_GPU": "GPU choice: set resources.gpus_per_worker (devices via CUDA_VISIBLE_DEVICES)",
    "SET_PCI_BUS_ID": "GPU ordering is left to Ray and CUDA",
    "DO_CRF": "CRF post-processing is not supported",
    "DO_TRAIN": "raygym trains when you run `raygym train` (or `raygym search`)",
    "DOPLOT": "plots come from `raygym evaluate` and `raygym report`",
    "PLOT": "plots come from `raygym evaluate` and `raygym report`",
    "USEMASK": "Gym's label-file naming switch; raygym pairs files by name (data.labels.key)",
    "AUG_LOOPS": "memory chunking in Gym's make_dataset; raygym streams shards with Ray Data",
    "MODE": "Gym's all/aug/noaug switch; raygym trains on the augmented train split "
            "(data.augment.copies: 0 for none)",
    "WRITE_MODELMETADATA": "prediction metadata; `raygym predict` writes its own",
    "OTSU_THRESHOLD": "Otsu thresholding of predictions is not supported",
    "INITIAL_EPOCH": "resume a run with `raygym train --resume RUN_DIR`",
    "CLEAR_MEMORY": "TensorFlow memory setting; not needed",
    "LOAD_DATA_WITH_CPU": "TensorFlow data placement setting; not needed",
}
"""Known Gym keys raygym does not carry over, and why."""

KNOWN_GYM_KEYS: list[str] = sorted({*DIRECT_KEYS, *HANDLED_KEYS, *NOT_CARRIED})
"""Every Gym key the converter knows, for "did you mean" hints on a misspelt one."""
