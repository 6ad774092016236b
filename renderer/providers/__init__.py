"""Providers: the interchangeable back-ends a stage uses (built from config with hydra.utils.instantiate)."""
