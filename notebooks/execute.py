"""Execute a notebook headless with nbclient, in memory; the notebook file is never written.

Usage: python notebooks/execute.py NOTEBOOK [--results DIR] [--output FILE] [--timeout S]

The kernel starts in the notebook's folder (as in Jupyter) with ROUTELAB_RESULTS set to DIR
(made absolute). Exit status 0 when every cell ran, 1 when a cell raised (its traceback is
printed), 2 for bad arguments. --output writes the executed copy (with figures) elsewhere,
e.g. to look at it or attach it to a CI run.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

KERNEL = "routelab-python"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=pathlib.Path)
    ap.add_argument("--results", type=pathlib.Path, help="result directory (sets ROUTELAB_RESULTS)")
    ap.add_argument("--output", type=pathlib.Path, help="write the executed notebook here")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = ap.parse_args()

    nb_path = args.notebook.resolve()
    if not nb_path.is_file():
        print(f"error: {args.notebook}: no such notebook", file=sys.stderr)
        return 2
    if args.output is not None and args.output.resolve() == nb_path:
        print("error: --output must not be the notebook itself (committed outputs stay cleared)", file=sys.stderr)
        return 2
    if args.results is not None:
        results = args.results.resolve()
        if not (results / "summary.csv").is_file() or not (results / "runs.csv").is_file():
            print(f"error: {args.results}: not a routelab result directory (needs summary.csv and runs.csv)",
                  file=sys.stderr)
            return 2
        os.environ["ROUTELAB_RESULTS"] = str(results)  # inherited by the kernel process

    nb = nbformat.read(nb_path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="routelab-nb-") as tmp:
        # A kernel spec of our own that runs this very interpreter, so the kernel has the
        # packages this script has (a venv, or PYTHONPATH from `pip --target`), whatever
        # "python3" kernel another Jupyter installation registered; and a fresh IPython
        # profile, so no user startup files run.
        spec_dir = pathlib.Path(tmp, "kernels", KERNEL)
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (routelab notebook)",
            "language": "python",
        }))
        os.environ["JUPYTER_PATH"] = tmp + os.pathsep + os.environ.get("JUPYTER_PATH", "")
        os.environ["IPYTHONDIR"] = str(pathlib.Path(tmp, "ipython"))
        client = NotebookClient(
            nb,
            timeout=args.timeout,
            kernel_name=KERNEL,
            resources={"metadata": {"path": str(nb_path.parent)}},
        )
        started = time.monotonic()
        try:
            client.execute()
            failed = None
        except CellExecutionError as e:
            failed = e
        elapsed = time.monotonic() - started

    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.output)
    if failed is not None:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(failed))  # no terminal colours in CI logs
        print(f"error: {args.notebook}: a cell failed after {elapsed:.1f} s:\n{plain}", file=sys.stderr)
        return 1
    code_cells = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"{args.notebook}: {code_cells} code cells ran in {elapsed:.1f} s"
          + (f" against {os.environ['ROUTELAB_RESULTS']}" if args.results else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
