"""Data stage: reading, pairing, transforms, ``prepare`` (Ray Data) and prepared datasets."""
