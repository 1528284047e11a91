"""Output smoothing for streaming recognition.

MITDemoSmoother reproduces the online demo of MIT temporal-shift-module
(online_demo/main.py, with its settings SOFTMAX_THRES = 0, HISTORY_LOGIT = True,
REFINE_OUTPUT = True), for the 27 Jester classes in sorted order:

1. the logits of the last 12 processed frames are summed and the argmax taken;
2. `process_output`: a class in `masked` (3 Pulling Hand In, 7/8 Rolling Hand
   Backward/Forward, 21/22 Turning Hand (Counter)clockwise) is replaced by the previous
   output; class 0 (Doing other things) becomes 2 (No gesture); a class that differs from
   the previous output is accepted only when the last two outputs agree, otherwise the
   previous output is kept; the history keeps 20 entries and starts as [2].

One point where the demo cannot be followed literally: its rule reads history[-2] while
the history holds only its initial entry, which raises IndexError in the demo when the
first prediction differs from 2 (and is neither masked nor 0). Here a missing entry counts
as "the last two outputs do not agree", so the first change waits one frame.

LogitAverager is the generic form (any class count): the argmax of the mean logits of the
last `window` frames.
"""

import collections

import numpy as np

JESTER_MASKED = (7, 8, 21, 22, 3)
JESTER_MERGED = {0: 2}
JESTER_NO_GESTURE = 2


class LogitAverager:
    """Mean of the last `window` frames' logits; `update(logits)` returns (class, mean)."""

    def __init__(self, window=12):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer. Received: window={window!r}")
        self.window = window
        self.logits = collections.deque(maxlen=window)

    def update(self, logits):
        self.logits.append(np.asarray(logits, "float64").reshape(-1))
        mean = np.mean(self.logits, axis=0)
        return int(np.argmax(mean)), mean


class MITDemoSmoother:
    """The online demo's smoothing (see the module docstring); `update(logits)` returns the
    class index to show for this frame."""

    def __init__(self, history_logits=12, max_history=20, masked=JESTER_MASKED,
                 merged=None, initial=JESTER_NO_GESTURE):
        self.history_logits = history_logits
        self.max_history = max_history
        self.masked = tuple(masked)
        self.merged = dict(JESTER_MERGED if merged is None else merged)
        self.logits = []
        self.history = [initial]

    def refine(self, index):
        """main.py process_output on a class index (updates the history)."""
        history = self.history
        if index in self.masked:
            index = history[-1]
        index = self.merged.get(index, index)
        if index != history[-1]:
            if len(history) < 2 or history[-1] != history[-2]:
                index = history[-1]
        history.append(index)
        self.history = history[-self.max_history:]
        return self.history[-1]

    def update(self, logits):
        self.logits.append(np.asarray(logits, "float64").reshape(1, -1))
        self.logits = self.logits[-self.history_logits:]
        index = int(np.argmax(sum(self.logits), axis=1)[0])
        return self.refine(index)
