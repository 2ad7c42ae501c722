"""Guided visual search (V*, Wu & Xie 2023) for any model of the toolkit: when a question needs a detail too small
for the towers' 224-384 px view, search the image for the objects it names, best-first over a quad-tree of patches,
and answer from crops of what was found, held as extra images in the prompt (a visual working memory).

One small module per part (docs/search.md):

- ``settings``: the constants (V*'s defaults) as one typed config;
- ``trigger``: search or not (the model's own option margin; V*'s refusal string; always; never);
- ``targets``: which objects (rules over the question; given names);
- ``localise``: where in a patch (grounded cells vs the target words' embeddings; the model's own yes/no; a detector
  you plug in; ground truth);
- ``quadtree`` and ``search``: the best-first search over the quad-tree, batched across searches;
- ``memory``: crops and the prompt that carries them;
- ``guided``: the loop around a model (:class:`GuidedSearch`);
- ``draw``: a PNG of a search; ``eval_model``: ``cambrian eval run --search``.

No search model is trained or shipped: the localisers read signals the model already has, or yours.
"""

from __future__ import annotations

__all__ = ["GuidedSearch", "Question", "SearchSettings"]


def __getattr__(name):
    if name in ("GuidedSearch", "Question"):
        from . import guided

        return getattr(guided, name)
    if name == "SearchSettings":
        from .settings import SearchSettings

        return SearchSettings
    raise AttributeError(name)
