"""What a thread was doing in a sample: its state, and the profile's mode.

CPU mode samples threads that run (state ``cpu``, or ``gc`` while they run
a garbage collection); wall mode also samples the time they spend off CPU
(``idle``: blocked, sleeping or waiting for a processor; ``gil``: waiting
for the GIL). A profile keeps one state code per sample (their index in
``STATES``, as the native sampler writes them), and whether the thread
held the GIL (``GIL_VALUES``): CPU burnt outside the GIL is C code that
released it, which other threads can run beside.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from array import array

__all__ = [
    "GIL_CODES",
    "GIL_VALUES",
    "MODES",
    "OFF_CPU",
    "STATES",
    "STATE_CODES",
    "STATE_FRAMES",
    "check_profile_mode",
]

# What a thread was doing (Sample.state), in the order of the native codes.
STATES = ("cpu", "idle", "gil", "gc")
STATE_CODES = {name: code for code, name in enumerate(STATES)}
# Synthetic leaf frames that show a state in stacks (Profile.aggregate).
STATE_FRAMES = {"idle": "<idle>", "gil": "<waiting for the GIL>"}


# The codes of the states off CPU.
OFF_CPU = frozenset((STATE_CODES["idle"], STATE_CODES["gil"]))
MODES = ("cpu", "wall")

# Whether the thread held the GIL when sampled (Sample.holds_gil), in the
# order of the native codes: not known (a profile built by hand, a thread of
# another interpreter), held, not held.
GIL_VALUES = (None, True, False)
GIL_CODES = {None: 0, True: 1, False: 2}


def check_profile_mode(mode: str | None, states: array) -> str:
    """``mode`` checked, or when None: wall if any sample is off CPU."""
    if mode is None:
        return "wall" if any(s in OFF_CPU for s in states) else "cpu"
    if mode not in ("cpu", "wall"):
        raise ValueError(f"mode must be 'cpu' or 'wall', got {mode!r}")
    return mode
