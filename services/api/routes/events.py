"""GET /events: Server-Sent Events relaying the device's MQTT events to browsers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.api.deps import UNAUTHORIZED, AuthorizedOrQuery, State

router = APIRouter(tags=["events"], responses=UNAUTHORIZED)

_DESCRIPTION = """
A `text/event-stream` that never ends on its own. Every EZREC message of this device (the topics under
`ezrec/<camera_id>/` listed in docs/mqtt.md, and `ezrec/media/updated`) becomes one event whose `data` is
JSON `{"topic": ..., "payload": ...}`: the payload validated against its model and re-serialized, or the
text `online` / `offline` for a service's availability. Anything else (another topic, a payload that is
not one of ours, over 64 KiB, or 1 MiB for the schedule) is dropped. On connect the retained state comes
first: the last schedule, status and availability messages that were *published retained*. A comment line
(`: keep-alive`) every 15 s keeps proxies from closing the stream. A client that falls more than 256 events
or 4 MiB behind is disconnected; `EventSource` reconnects.

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
