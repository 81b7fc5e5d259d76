"""The README's Python client example, as a script: process a manifest on local workers.

    python examples/client.py manifest.csv results/

Run it as a file. The ``if __name__ == "__main__":`` guard is required: the local Dask
workers are new processes that import the main module, and without the guard each of
them would run the example again and start a cluster of its own.
"""

import sys

import hemoflow


def main(manifest: str = "manifest.csv", out: str = "results/") -> dict:
    with hemoflow.Client() as client:  # local workers; or hemoflow.Client("tcp://scheduler:8786")
        job = client.submit(manifest, out=out)  # validates the manifest and the output, then returns at once
        print(job.progress())  # {'slides_done': 0, 'slides_total': 1, 'tiles_done': 0, ...}
        result = job.result()  # {'job': {...}, 'slides': [...], 'patients': [...]}
    for p in result["patients"]:
        print(p["patient_id"], p["counts"])
    print("job status:", result["job"]["status"], "in", result["job"]["seconds"], "s; outputs in", out)
    return result


if __name__ == "__main__":
    main(*sys.argv[1:3])
