"""``cambrian serve``: an OpenAI-compatible HTTP server (FastAPI + uvicorn) for any model with the generation
contract (``cambrian.models.generate.GenerativeVLM``).

- ``settings.py``  ServeSettings: model name, limits, batching, API key, local-image root
- ``errors.py``    APIError and the OpenAI error JSON shape
- ``schema.py``    the request body (pydantic)
- ``messages.py``  OpenAI messages -> a conversation with ``<image>`` tags + decoded images (``images.py``)
- ``scheduler.py`` the batching queue: one worker thread runs generation for batches of requests
- ``app.py``       the FastAPI app: routes, auth, body limit, the order of checks
- ``responses.py`` OpenAI response bodies and server-sent events from generation events
- ``server.py``    running it: socket, uvicorn, graceful shutdown, ``run_server``, ``ServerThread``
"""
