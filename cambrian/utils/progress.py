"""The one progress bar of long library work (tqdm is a dependency): ``progress_bar(...)`` is a tqdm bar, or with
``enabled=False`` a silent one with the same methods (``update``, ``set_postfix``, ``close``, iteration), so callers
never branch on whether a bar exists."""

from __future__ import annotations

from collections.abc import Iterable


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    **kwargs,
):
    from tqdm.auto import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=leave, disable=not enabled, **kwargs
    )
