from __future__ import annotations

import logging

from shared.logs import setup_logging


def test_secrets_never_reach_the_log(capsys):
    setup_logging("api", "INFO", ["s3cret-token-value", "mqtt-pass-123"])
    logging.getLogger("x").info("connecting with %s and mqtt-pass-123", "s3cret-token-value")
    logging.getLogger("x").error("token in message s3cret-token-value")
    err = capsys.readouterr().err
    assert "s3cret" not in err and "mqtt-pass" not in err
    assert err.count("***") == 3


def test_a_traceback_is_redacted_too(capsys):
    """An exception's message (a refused request quoting its Authorization header) is printed with the traceback."""
    setup_logging("worker", "INFO", ["s3cret-token-value"])
    try:
        raise ValueError("401 for Authorization: Bearer s3cret-token-value")
    except ValueError:
        logging.getLogger("x").exception("upload failed")
    err = capsys.readouterr().err
    assert "s3cret" not in err and "ValueError: 401 for Authorization: Bearer ***" in err
    assert "Traceback" in err
