"""Shipped presets, as torch-free data: encoder presets (``encoders``), model presets (``models/*.yaml``) and
training recipes (``recipes/*.yaml``). This layer imports only ``cambrian.config`` and ``cambrian.registry``, so
resolving a preset never imports torch or transformers; the files ship inside the package (a wheel has them)."""
