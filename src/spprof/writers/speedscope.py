"""speedscope's file format (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile per thread. Each sample is a list of frame indices
ROOT FIRST (index 0 is the outermost call); weights are nanoseconds of CPU
time (interval x sample weight); samples are in capture order.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._model import Frame, Profile

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def build_document(profile: Profile, *, merge_threads: bool = False) -> dict:
    """The speedscope document as a dict (the same content the writer emits)."""
    return json.loads(WRITER.render(profile, merge_threads=merge_threads))


class SpeedscopeWriter:
    name = "speedscope"
    extension = ".speedscope.json"

    def render(self, profile: Profile, *, merge_threads: bool = False, **_: object) -> bytes:
        """The document assembled as text: each unique stack is serialised
        once and reused for every sample that has it, so a million samples
        cost a string join, not a million small lists."""
        frames: list[str] = []
        frame_index: dict[Frame, int] = {}
        stack_json: dict[int, str] = {}
        stacks = profile.stacks

        def stack_text(sidx: int) -> str:
            got = stack_json.get(sidx)
            if got is None:
                ids = []
                for fr in stacks[sidx]:
                    i = frame_index.get(fr)
                    if i is None:
                        i = frame_index[fr] = len(frames)
                        frames.append(
                            json.dumps({"name": fr.function_name, "file": fr.filename, "line": fr.lineno})
                        )
                    ids.append(str(i))
                got = stack_json[sidx] = "[" + ",".join(ids) + "]"
            return got

        interval_ns = profile.interval_ns
        per_thread: dict[int, tuple[list[str], list[int]]] = {}
        for _ts, tid, sidx, w in profile.iter_compact():
            key = 0 if merge_threads else tid
            entry = per_thread.get(key)
            if entry is None:
                entry = per_thread[key] = ([], [])
            entry[0].append(stack_text(sidx))
            entry[1].append(w * interval_ns)
        names = profile.thread_names
        parts = []
        for key, (samples, weights) in per_thread.items():
            name = "all threads" if merge_threads else f"{names.get(key) or 'thread'} (tid {key})"
            parts.append(
                '{"type":"sampled","name":' + json.dumps(name) + ',"unit":"nanoseconds","startValue":0,'
                f'"endValue":{sum(weights)},"samples":[' + ",".join(samples) + '],"weights":['
                + ",".join(map(str, weights)) + "]}"
            )
        head = {
            "$schema": SCHEMA_URL,
            "name": f"spprof profile ({profile.sample_count} samples)",
            "activeProfileIndex": 0,
            "exporter": "spprof",
        }
        text = (
            json.dumps(head, separators=(",", ":"))[:-1]
            + ',"shared":{"frames":[' + ",".join(frames) + ']},"profiles":[' + ",".join(parts) + "]}"
        )
        return text.encode("utf-8")


WRITER = SpeedscopeWriter()
