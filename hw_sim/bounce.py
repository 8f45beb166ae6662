"""Contact bounce and glitches, as a list of timed edges.

A push-button's contacts bounce for a few milliseconds when they make or break:
measured buttons settle in 0.2-5 ms, most under 2 ms, with gaps between
bounces of tens to hundreds of microseconds.  ``bounce`` draws such a sequence;
``glitch`` is a lone spike, like interference picked up by a long cable.
"""

from __future__ import annotations

import random

Edge = tuple[float, bool]  # (seconds after the first edge, contact made)


def bounce(rng: random.Random, make: bool, max_bounce_s: float = 0.004) -> list[Edge]:
    """The edges of one make (``make=True``) or break, ending in the final state."""
    edges: list[Edge] = [(0.0, make)]
    transitions = 2 * rng.randint(1, 5)  # an even number: back to the final state
    t = 0.0
    for i in range(transitions):
        t += rng.uniform(0.00005, 0.0006)
        if t > max_bounce_s:
            break
        edges.append((t, make if i % 2 else not make))
    if edges[-1][1] != make:
        edges.append((t + 0.00005, make))
    return edges


def glitch(width_s: float = 0.001) -> list[Edge]:
    return [(0.0, True), (width_s, False)]
