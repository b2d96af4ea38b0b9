"""POST /bookings/{id}/highlights: the device token or the booking's own user's token; the request reaches the
recorder's topic as a HighlightRequest; anything else is refused with the reason."""

from __future__ import annotations

import json

from tests.api.conftest import AUTH, booking_body
from tests.api.test_auth_limits import _user_token, jwt_client  # noqa: F401 - the fixture


def test_the_booking_being_recorded_takes_requests_from_its_user_and_the_device(jwt_client, settings,  # noqa: F811
                                                                              listen):
    client = jwt_client
    requests = listen(f"ezrec/{settings.camera_id}/highlight/request")
    assert client.post("/bookings", json=booking_body("now", -60, 600), headers=AUTH).status_code == 201
    user = {"Authorization": f"Bearer {_user_token('u1')}"}
    answer = client.post("/bookings/now/highlights", headers=user, json={"seconds": 12})
    assert answer.status_code == 202, answer.text
    request_id = answer.json()["request_id"]
    assert answer.json()["topic"] == f"ezrec/{settings.camera_id}/highlight/created"
    _, payload = requests.wait_for(lambda t, p: json.loads(p).get("request_id") == request_id, 10)
    sent = json.loads(payload)
    assert (sent["booking_id"], sent["seconds"], sent["after_s"], sent["source"]) == ("now", 12, None, "api")
    assert client.post("/bookings/now/highlights", headers=AUTH).status_code == 202  # the device, no body
    other = {"Authorization": f"Bearer {_user_token('u2')}"}
    assert client.post("/bookings/now/highlights", headers=other).status_code == 404  # not theirs: not seen
    assert client.post("/bookings/now/highlights", headers=user, json={"after_s": 61}).status_code == 422
    assert client.post("/bookings/now/highlights", headers=user, json={"extra": 1}).status_code == 422
