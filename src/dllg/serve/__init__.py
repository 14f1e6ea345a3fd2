"""`dllg serve`: the fused experts behind an OpenAI-compatible HTTP API, with continuous batching.

`engine.py` owns the one decode loop (a `Decoder`) on its own thread; `app.py` is the FastAPI app whose
handlers hand requests to it; `protocol.py` is the request and response JSON; `streaming.py` turns arriving
tokens into text deltas that never show a stop string; `server.py` runs the app with uvicorn.
"""
