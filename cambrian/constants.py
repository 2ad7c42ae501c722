"""Constants shared across the package (values follow the official code, docs/official-code.md#tokens)."""

IGNORE_INDEX = -100
# Placeholder id for an image inside token id sequences; never sent to the embedding table.
IMAGE_TOKEN_INDEX = -200
IMAGE_TOKEN = "<image>"
