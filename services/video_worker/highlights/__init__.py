"""Highlights: clips a player asks for during a recording, cut from the recorder's segments as they are written.

table.py  the clips to make (shared by the workers of one DATA_DIR, leased like the job table)
cut.py    packets from the segments, on keyframes, into one MP4 (no decode)
clip.py   one clip: sources, copy or transcode with the logos, upload, events
loop.py   the worker's highlight thread
"""
