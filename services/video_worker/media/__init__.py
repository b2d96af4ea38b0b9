"""The worker's PyAV work: decode, overlay, encode, intro preparation, remux join, audio, tail reading.

Nothing here knows the job table, the store or the bus (tests/test_architecture.py checks it): `ezrec process`
runs on this package alone, and the job side (services/video_worker/) calls it.
"""
