"""GET /events: Server-Sent Events relaying the device's MQTT events to browsers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.api.deps import UNAUTHORIZED, AuthorizedOrQuery, State

router = APIRouter(tags=["events"], responses=UNAUTHORIZED)

_DESCRIPTION = """
A `text/event-stream` that never ends on its own. Every MQTT message on `ezrec/<camera_id>/#` and
`ezrec/media/updated` becomes one event whose `data` is JSON `{"topic": ..., "payload": ...}` (the payload
embedded as JSON when it is JSON, else as text, e.g. `online`). On connect the latest schedule, status and
availability messages are sent first. A comment line (`: keep-alive`) every 15 s keeps proxies from closing
the stream. A client that falls more than 256 events behind is disconnected; `EventSource` reconnects.

Needs the device token: as `Authorization: Bearer` or, for `EventSource` (which cannot send headers),
as `?token=`.

```js
const events = new EventSource(`/events?token=${token}`);
events.onmessage = (e) => { const {topic, payload} = JSON.parse(e.data); };
```
"""


@router.get(
    "/events",
    dependencies=[AuthorizedOrQuery],
    summary="Live device events (Server-Sent Events)",
    description=_DESCRIPTION,
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"example":
               'id: 7\ndata: {"topic":"ezrec/cam1/recording/started","payload":{"v":1,"booking_id":"b1"}}\n\n'}},
               "description": "The event stream"}},
)
async def events(state: State) -> StreamingResponse:
    return StreamingResponse(state.hub.stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
