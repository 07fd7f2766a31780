"""Entry points the warm-worker tests run in place of nnU-Net's (see tests/execution/test_warm.py).

``main`` reads its mode from ``sys.argv[1]`` as a console script reads its arguments.
"""
import json
import os
import sys
import time


def _value(setting):
    """A folder setting of nnunetv2.paths: a lazy object (2.8) or a string read at import (older)."""
    return setting.get() if hasattr(setting, "get") else setting


def _report(path: str) -> None:
    import nnunetv2.configuration as configuration
    import nnunetv2.paths as paths
    import nnunetv2.utilities.file_path_utilities as fpu

    torch = sys.modules.get("torch")
    out = {
        "argv": sys.argv,
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "results": _value(paths.nnUNet_results),
        "results_seen_by_importer": _value(fpu.nnUNet_results),
        "def_n_proc": configuration.default_num_processes,
        "main_file": getattr(sys.modules["__main__"], "__file__", None),
        "stdin": os.readlink("/proc/self/fd/0"),
        "stdout": os.readlink("/proc/self/fd/1"),
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "torch_seed": None if torch is None else torch.initial_seed(),
        "cuda_initialized": None if torch is None else torch.cuda.is_initialized(),
    }
    with open(path, "w") as f:
        json.dump(out, f)


def main():
    mode = sys.argv[1]
    if mode == "report":
        _report(sys.argv[2])
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return int(sys.argv[3]) if len(sys.argv) > 3 else None
    if mode == "threads":  # nnU-Net's entry points do this on a CPU
        import multiprocessing

        import torch

        torch.set_num_threads(multiprocessing.cpu_count())
        _report(sys.argv[2])
        return None
    if mode == "raise":
        raise RuntimeError("probe failure")
    if mode == "sleep":
        with open(sys.argv[2], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(float(sys.argv[3]))
        return None
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "message":
        sys.exit("probe says goodbye")
    if mode == "cleanup":  # what a normal exit still does after the entry point returned
        import atexit
        import threading

        out = sys.argv[2]
        atexit.register(lambda: open(out + ".atexit", "w").write("ran"))

        def late():
            time.sleep(0.5)
            with open(out + ".thread", "w") as f:
                f.write("ran")

        threading.Thread(target=late).start()  # non-daemon: the exit waits for it
        print("buffered line without newline", end="")
        return None
    raise SystemExit(f"unknown mode {mode}")
