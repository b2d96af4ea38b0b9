"""A push button wired to the Pi (HIGHLIGHT_GPIO_PIN, BCM numbering, to ground) asks for a highlight.

gpiozero's Button, with the internal pull-up and a 50 ms debounce; its callbacks run on gpiozero's own thread,
never the camera's. Unset pin: no button. A pin that cannot be opened (not a Pi, the pin busy) is logged and the
recorder records on without it: a button must never cost a recording.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

BOUNCE_S = 0.05


class Closeable(Protocol):
    def close(self) -> None: ...


def start_button(pin: int | None, on_press: Callable[[], None]) -> Closeable | None:
    if pin is None:
        return None
    try:
        from gpiozero import Button

        button = Button(pin, pull_up=True, bounce_time=BOUNCE_S)
    except Exception as exc:  # gpiozero raises its own errors for a missing pin factory or a busy pin
        log.error("highlight button on GPIO %s unavailable (%s: %s); highlights from MQTT and the API only", pin,
                  type(exc).__name__, exc)
        return None

    def pressed() -> None:
        try:
            on_press()
        except Exception:  # never let a press take gpiozero's thread down
            log.exception("highlight button press failed")

    button.when_pressed = pressed
    log.info("highlight button on GPIO %s", pin)
    return button
