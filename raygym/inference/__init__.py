"""Everything that runs a trained model: the artifact on disk (:mod:`.artifact`), the device,
precision and memory layout a model runs in (:mod:`.runtime`), scoring a batch and
ensembling softmax (:mod:`.scoring`), and the export of a search's best models
(:mod:`.export`). Training's validation, ``evaluate``, ``predict`` and ``report`` all go
through here: one way to load a model and score a batch."""
