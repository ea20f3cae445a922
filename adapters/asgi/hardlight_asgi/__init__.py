"""hardlight_asgi: a HardLight server as an ASGI 3 application (uvicorn, hypercorn, Starlette,
FastAPI): the ASGI server does TLS, the upgrade and framing; ``hardlight_core`` decides the rest.

```python
from hardlight_asgi import HardLightApp
app = HardLightApp(CounterHandler)      # uvicorn module:app --ssl-certfile ... --ssl-keyfile ...
```
"""

from hardlight_core import HandshakeInfo, Limits, Refuse

from ._app import EventEmitter, HardLightApp, TopicNotifier, parse_compression_level

__all__ = [
    "EventEmitter",
    "HandshakeInfo",
    "HardLightApp",
    "Limits",
    "Refuse",
    "TopicNotifier",
    "parse_compression_level",
]
