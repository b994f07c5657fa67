"""Featurisation speed on QM9: OGB's reference pipeline vs benchbase's featuriser vs the cache.

What is compared, on the same SMILES (all 130,831 QM9 molecules by default):

- reference: ``ogb.utils.smiles2graph`` + one ``torch_geometric.data.Data`` per molecule (what an
  OGB/PyG pipeline does before it can collate);
- parse: ``rdkit.Chem.MolFromSmiles`` alone, which both pipelines must call for every molecule:
  its time bounds what any featuriser can win (reference time / parse time is the largest
  possible speed-up of a single-process featuriser);
- cold: ``benchbase_molecules.featurize.featurize_smiles`` (contiguous arrays, no cache);
- cached: building the ``qm9`` dataset object and calling ``arrays()`` from its cache file (the
  cache is written first, untimed, into a fresh temporary ``$BENCHBASE_CACHE``; the file is then in
  the OS page cache, as it is for every run after the first).

Each phase runs in a fresh child process, so that its peak memory (peak RSS above the RSS after
imports and after reading the SMILES, which are not timed) is its own. Usage::

    python benchmarks/featurize.py [--limit N] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _smiles(limit: int | None) -> list[str]:
    from benchbase_molecules.moldata import unpack_strings
    from benchbase_molecules.qm9 import load_source

    src = load_source()
    smiles = unpack_strings(src["smiles"], src["smiles_ptr"])
    return smiles if limit is None else smiles[:limit]


def _phase(name: str, limit: int | None, workers: int) -> dict:
    import torch

    torch.set_num_threads(1)
    if name == "reference":
        from ogb.utils import smiles2graph
        from torch_geometric.data import Data

        smiles = _smiles(limit)
        start_rss = _rss_kib()
        t0 = time.perf_counter()
        graphs = []
        for smi in smiles:
            g = smiles2graph(smi)
            graphs.append(
                Data(
                    x=torch.from_numpy(g["node_feat"]),
                    edge_index=torch.from_numpy(g["edge_index"]),
                    edge_attr=torch.from_numpy(g["edge_feat"]),
                    num_nodes=g["num_nodes"],
                )
            )
        seconds = time.perf_counter() - t0
        n = len(graphs)
    elif name == "parse":
        from rdkit import Chem, RDLogger

        RDLogger.DisableLog("rdApp.*")
        smiles = _smiles(limit)
        start_rss = _rss_kib()
        t0 = time.perf_counter()
        mols = [Chem.MolFromSmiles(smi) for smi in smiles]
        seconds = time.perf_counter() - t0
        n = sum(mol is not None for mol in mols)
    elif name == "cold":
        from benchbase_molecules.featurize import featurize_smiles

        smiles = _smiles(limit)
        start_rss = _rss_kib()
        t0 = time.perf_counter()
        out = featurize_smiles(smiles, workers=workers)
        seconds = time.perf_counter() - t0
        n = len(out) - len(out.failed)
    else:
        from benchbase_molecules.qm9 import QM9

        start_rss = _rss_kib()
        t0 = time.perf_counter()
        dataset = QM9(subset=limit)
        arrays = dataset.arrays()
        seconds = time.perf_counter() - t0
        n = arrays.num_graphs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"phase": name, "molecules": n, "seconds": seconds, "peak_mib": (peak - start_rss) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N QM9 molecules (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the cold featuriser")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.limit, args.workers)))
        return

    with tempfile.TemporaryDirectory(prefix="benchbase-bench-") as cache:
        env = {**os.environ, "BENCHBASE_CACHE": cache}
        limit = [] if args.limit is None else ["--limit", str(args.limit)]
        # Untimed set-up: parse the CSVs and write the featurised cache the "cached" phase reads.
        setup = f"from benchbase_molecules.qm9 import QM9; QM9(subset={args.limit}).arrays()"
        subprocess.run([sys.executable, "-c", setup], env=env, check=True)
        results = {}
        for phase in ("reference", "parse", "cold", "cached"):
            cmd = [sys.executable, __file__, "--phase", phase, "--workers", str(args.workers), *limit]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            results[phase] = json.loads(out.strip().splitlines()[-1])

    print(f"QM9 molecules: {results['cold']['molecules']}, cold featuriser workers: {args.workers}")
    print(f"{'pipeline':<34}{'seconds':>10}{'molecules/s':>14}{'peak MiB':>10}")
    labels = {
        "reference": "smiles2graph + PyG Data (OGB)",
        "parse": "RDKit MolFromSmiles only (bound)",
        "cold": "featurize_smiles (no cache)",
        "cached": "qm9 dataset from cache",
    }
    for phase, label in labels.items():
        r = results[phase]
        print(f"{label:<34}{r['seconds']:>10.3f}{r['molecules'] / r['seconds']:>14,.0f}{r['peak_mib']:>10.1f}")
    ref, cold, cached = (results[p]["seconds"] for p in ("reference", "cold", "cached"))
    parse = results["parse"]["seconds"]
    print(f"speed, cold featuriser / reference: {ref / cold:.2f}x; cached / cold: {cold / cached:.1f}x")
    print(f"RDKit parsing is {parse / ref:.0%} of the reference's time and {parse / cold:.0%} of the featuriser's")
    bound = ref / parse
    print(f"(with {args.workers} worker(s)); a single-process featuriser can be at most {bound:.2f}x the reference")
    summary = {"workers": args.workers, "molecules": results["cold"]["molecules"]}
    summary.update({f"{phase}_seconds": round(results[phase]["seconds"], 3) for phase in labels})
    summary.update({"cold_vs_reference": round(ref / cold, 3), "bound_vs_reference": round(ref / parse, 3)})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
