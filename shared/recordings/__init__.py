"""The on-disk contract between services: where recordings live, what their files are called, how they are read.

The recorder writes it, the worker and the status service read it (as shared/topics.py owns the MQTT topics).
"""
