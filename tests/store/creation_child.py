"""Child process for the creation crash test: creates a run and SIGKILLs itself at the K-th profiled event
inside ``evolens.store`` (every Python call and every C call made from store code — SQLite statements, file
writes, fsync, link — counts). With K = 0 it creates the run and prints how many events creation took.

Usage: python creation_child.py RUN_DIR K
"""

import os
import signal
import sys

from evolens.store import RunWriter

run_dir, kill_at = sys.argv[1], int(sys.argv[2])
count = 0
STORE = os.sep + os.path.join("evolens", "store") + os.sep


def profile(frame, event, arg):
    global count
    if STORE in frame.f_code.co_filename:
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


sys.setprofile(profile)
writer = RunWriter(run_dir, kind="capture", name="created", config={"lr": 0.1})
sys.setprofile(None)
writer.close()
print(count, flush=True)
