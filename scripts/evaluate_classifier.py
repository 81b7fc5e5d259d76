"""Figures of the WBC classifier per source, leave-one-source-out, and the classical baseline.

For each source it prints the confusion matrix, macro recall and blast sensitivity,
specificity and precision, each with a 95 % interval (Clopper–Pearson; percentile
bootstrap for macro recall), and says which cells they are:

- ``trained``: the cells the shipped model was fitted on;
- ``validation``: held out from fitting by ``hemoflow.training.splits`` (20 % of each
  collection by a salted hash of the file name; BCCD by ``bccd_split``). They were looked
  at while the recipe was made, so they are validation, not test, figures;
- ``unseen``: leave-one-source-out, a model trained on the other sources (``--loso-steps``
  batches, from scratch or from ``--loso-init``) scored on every cell of the held-out
  source. Starting from a network that saw the held-out source makes it not unseen: say so.

Tasks: PBC 8 classes through ``group`` (``pbc/`` originals); PBC maturation 5 classes
(``pbc/`` and ``pbc_maturation/`` originals); marrow 6 identifiable classes and 7 with
``not_identifiable``; BCCD 4 types through ``group``. Crops are cut as ``hemoflow classify``
cuts a batch without ``--mpp`` (each image's own scale estimate, pooled per source and
image size).

Usage::

    python scripts/evaluate_classifier.py [--data ../shared/data] [--model PATH.pt] [--cache DIR]
        [--tta] [--parts model,baseline,loso] [--loso-steps 100] [--loso-init W.pt] [--json-out FILE]
        [--results docs/results/results.json]

``--json-out`` writes every figure; ``--results`` adds (or replaces) the headline figures of
the parts run in a results file (schema in ``docs/results/README.md``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hemoflow.classify.model import WbcClassifier, load_default_model, load_model  # noqa: E402
from hemoflow.classify.taxonomy import LABELS  # noqa: E402
from hemoflow.training.wbc import CACHE_MPP, CACHE_SIDE, IO, centre, train_network, training_set  # noqa: E402
from hemoflow.training.wbc_data import load_sources  # noqa: E402
from hemoflow.training.wbc_report import ABSTAIN_BELOW, TASKS, _views, evaluate_task  # noqa: E402

SOURCE_OF_TASK = {"pbc8": "pbc", "pbc_full": "pbc", "marrow_mll": "marrow_mll", "bccd": "bccd"}


def _fmt(f: dict) -> str:
    return f"{f['value']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]"


def print_task(r: dict, kind: str, label: str) -> None:
    print(f"\n== {r['task']} | {label} | kind={kind} | n={r['n']}")
    cols = r["columns"]
    print("   rows = truth, columns = prediction")
    print(" " * 16 + " ".join(f"{c[:7]:>7}" for c in cols))
    for c, row in zip(r["classes"], r["confusion"]):
        print(f"  {c[:14]:>14}" + " ".join(f"{v:>7d}" for v in row))
    print(f"   macro recall {_fmt(r['macro_recall'])} (bootstrap)   accuracy {r['accuracy']:.3f}")
    print("   recall: " + ", ".join(f"{c} {_fmt(v)}" for c, v in r["recall"].items()))
    if r.get("abstained") is not None:
        print(f"   not_identifiable given to {r['abstained']} cells")
    if "blast" in r:
        b = r["blast"]
        print(f"   blast sensitivity {_fmt(b['sensitivity'])}  specificity {_fmt(b['specificity'])}  "
              f"precision {_fmt(b['precision'])}  (Clopper-Pearson)")
    if "blast_ranking" in r:
        k = r["blast_ranking"]
        print(f"   ranked by p_blast: average precision {k['average_precision']:.3f}, ROC AUC {k['roc_auc']:.3f}, "
              f"best sensitivity at precision >= {k['precision']:.2f}: {k['sensitivity_at_precision']:.3f}")


def records(r: dict, kind: str, model: str, data: str, command: str) -> list[dict]:
    base = {"kind": kind, "model": model, "data": data, "command": command}
    out = [{"name": f"{r['task']}.macro_recall", **{k: r["macro_recall"][k] for k in ("value", "ci_low", "ci_high", "n")},
            **base}]
    for c, v in r["recall"].items():
        out.append({"name": f"{r['task']}.recall.{c}", **{k: v[k] for k in ("value", "ci_low", "ci_high", "n")}, **base})
    for m, v in r.get("blast", {}).items():
        out.append({"name": f"{r['task']}.blast_{m}", **{k: v[k] for k in ("value", "ci_low", "ci_high", "n")}, **base})
    for m in ("average_precision", "roc_auc", "sensitivity_at_precision"):
        if "blast_ranking" in r:
            out.append({"name": f"{r['task']}.blast_ranking.{m}", "value": r["blast_ranking"][m], "ci_low": None,
                        "ci_high": None, "n": r["n"], **base})
    return out


def evaluate_model(predict, views, splits, model_name, command, tasks=TASKS, kinds=None):
    """Run every task on every split; print and return the records."""
    recs, cache = [], {}
    for name, (src, _, _) in tasks.items():
        if src not in views:
            continue
        for split in splits:
            cs = views[src] if split == "all" else views[src].take(views[src].split == split)
            key = (src, split)
            if key not in cache:
                cache[key] = predict(cs)
            r = evaluate_task(name, cs, cache[key])
            kind = (kinds or {}).get(split, split if split != "train" else "trained")
            print_task(r, kind, model_name)
            recs += records(r, kind, model_name, f"{src} ({split} cells)", command)
    return recs


def loso(sets, views, steps, seed, threads, command, init=None, held_out=("marrow_mll", "bccd", "pbc")):
    recs = []
    groups = {"pbc": ("pbc8", "pbc_full"), "marrow_mll": ("marrow_mll",), "bccd": ("bccd",)}
    for held in held_out:
        srcs = groups[held]
        train_sources = [s for s in sets if s != held]
        train = training_set({k: v for k, v in sets.items() if k != held})
        t0 = time.perf_counter()
        net, info = train_network(train, steps=steps, seed=seed, threads=threads, log_every=0, init=init)
        clf = WbcClassifier(net, IO, metadata={"abstain_below": ABSTAIN_BELOW})
        start = f"from {Path(init).name}" if init else "from scratch"
        name = f"loso: train {'+'.join(train_sources)} {start}, {steps} steps of 64"
        print(f"\n#### leave out {held}: {name} ({time.perf_counter() - t0:.0f}s)")
        tasks = {k: v for k, v in TASKS.items() if v[0] in srcs}
        recs += evaluate_model(lambda cs: clf.predict_proba(centre(cs.crops, IO)), views, ["all"],
                               name, command, tasks, kinds={"all": "unseen"})
    return recs


def baseline(views, command, kinds=("svm", "rf", "logistic")):
    """The classical baselines, fitted on the training cells' features, scored on validation cells."""
    from hemoflow.training.baseline import KINDS, FeatureBaseline, features

    train_parts = [views[s].take((views[s].split == "train") & np.isin(views[s].label, LABELS))
                   for s in ("pbc", "marrow_mll", "bccd", "junk") if s in views]
    t0 = time.perf_counter()
    X = np.concatenate([features(centre(p.crops, IO)) for p in train_parts])
    labels = np.concatenate([p.label for p in train_parts])
    print(f"\n#### features of {len(labels)} training cells ({time.perf_counter() - t0:.0f}s)")
    cache: dict = {}

    def feats(cs):
        key = (cs.source, len(cs), str(cs.names[0]) if len(cs) else "")
        if key not in cache:
            cache[key] = features(centre(cs.crops, IO))
        return cache[key]

    recs = []
    for kind in kinds:
        t0 = time.perf_counter()
        model = FeatureBaseline(kind, LABELS).fit(X, labels)
        name = f"baseline: colour/shape/LBP/HOG features + {KINDS[kind]}"
        print(f"\n#### {name} (fitted in {time.perf_counter() - t0:.0f}s)")
        recs += evaluate_model(lambda cs: model.predict_proba(feats(cs)), views, ["validation"], name, command)
    return recs


#: (part, task record) -> (headline name, what it was measured on); ``{steps}`` and
#: ``{init}`` are the leave-one-source-out run's.
HEADLINES = {
    ("model", "pbc_8class_group.macro_recall"): (
        "WBC classifier: PBC 8 classes via group, macro recall (validation)",
        "PBC validation cells (training.splits.cell_split); the initial network it was fine-tuned from was "
        "trained on PBC cells, some of them among these"),
    ("model", "pbc_maturation_5class.macro_recall"): (
        "WBC classifier: PBC maturation (promyelocyte to segmented), macro recall (validation)",
        "PBC validation cells with a maturation stage"),
    ("model", "marrow_6class.macro_recall"): (
        "WBC classifier: marrow 6 identifiable classes, macro recall (validation)",
        "marrow_mll validation cells (another laboratory, MGG stain, no --mpp: pooled scale estimate)"),
    ("model", "marrow_6class.blast_sensitivity"): ("WBC classifier: marrow blast sensitivity (validation)",
                                                   "marrow_mll validation cells"),
    ("model", "marrow_6class.blast_precision"): ("WBC classifier: marrow blast precision (validation)",
                                                 "marrow_mll validation cells"),
    ("model", "marrow_6class.blast_specificity"): ("WBC classifier: marrow blast specificity (validation)",
                                                   "marrow_mll validation cells"),
    ("model", "bccd_4class_group.macro_recall"): (
        "WBC classifier: BCCD 4 types via group, macro recall (validation)",
        "single-WBC BCCD validation fields (bccd_split)"),
    ("loso", "marrow_6class.macro_recall"): (
        "Leave one source out: marrow held out, 6-class macro recall",
        "every marrow_mll cell; network trained {steps} batches {init} on PBC + BCCD (+ synthetic and non-cell images) only (not the shipped network)"),
    ("loso", "marrow_6class.blast_sensitivity"): (
        "Leave one source out: marrow held out, blast sensitivity",
        "every marrow_mll blast; network trained {steps} batches {init} on PBC + BCCD (+ synthetic and non-cell images) only (not the shipped network)"),
    ("loso", "bccd_4class_group.macro_recall"): (
        "Leave one source out: BCCD held out, 4 types via group, macro recall",
        "every single-WBC BCCD field; network trained {steps} batches {init} on PBC + marrow (+ synthetic and non-cell images) only"),
    ("loso", "pbc_8class_group.macro_recall"): (
        "Leave one source out: PBC held out, 8 classes via group, macro recall",
        "every PBC cell; network trained {steps} batches {init} on marrow + BCCD (+ synthetic and non-cell images) only (an initial network, "
        "when one is named, was trained on PBC cells)"),
    ("baseline", "marrow_6class.macro_recall"): (
        "Classical baseline (features + {kind}): marrow 6-class macro recall (validation)",
        "marrow_mll validation cells"),
    ("baseline", "pbc_8class_group.macro_recall"): (
        "Classical baseline (features + {kind}): PBC 8 classes macro recall (validation)",
        "PBC validation cells"),
    ("baseline", "pbc_maturation_5class.macro_recall"): (
        "Classical baseline (features + {kind}): PBC maturation macro recall (validation)",
        "PBC validation cells with a maturation stage"),
}


def headlines(part: str, recs: list[dict], args) -> list[dict]:
    """The headline records of one part, in percent, named as in the results file."""
    init = f"from {Path(args.loso_init).name}" if args.loso_init else "from scratch"
    out = []
    for r in recs:
        if (part, r["name"]) not in HEADLINES or (part == "model" and "validation" not in r["data"]):
            continue
        if part == "baseline" and "logistic" in r["model"]:
            continue  # the weakest baseline: in the printed output and --json-out only
        name, data = HEADLINES[(part, r["name"])]
        name = name.format(kind=r["model"].split(" + ")[-1])
        kind = r["kind"]
        if part == "loso" and r["name"].startswith("pbc") and args.loso_init:
            kind = "trained"  # the initial network was trained on PBC cells
        out.append({"name": name, **{k: round(100 * r[k], 1) for k in ("value", "ci_low", "ci_high")},
                    "n": r["n"], "unit": "%", "data": data.format(steps=args.loso_steps, init=init), "kind": kind,
                    "model": r["model"].removesuffix(" tta"), "command": r["command"]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--model", default=None, help="weights file (default: the shipped model)")
    ap.add_argument("--cache", default=None, help="folder for preprocessed crops (.npz)")
    ap.add_argument("--tta", action="store_true", help="average over the 8 flips/turns, as `hemoflow classify` does")
    ap.add_argument("--splits", default="validation,train")
    ap.add_argument("--parts", default="model,baseline,loso", help="comma-separated: model, baseline, loso")
    ap.add_argument("--loso-steps", type=int, default=100)
    ap.add_argument("--loso-held-out", default="marrow_mll,bccd,pbc", help="sources to leave out, in turn")
    ap.add_argument("--loso-init", default=None,
                    help="weights to start each leave-one-source-out run from (default: from scratch)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--results", default=None, metavar="RESULTS_JSON",
                    help="add this run's headline figures to a results file (docs/results/results.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    # the command that reproduces the figures: where the crops are cached or written changes none of them
    given, shown, skip = list(sys.argv[1:] if argv is None else argv), [], False
    for a in given:
        if skip or a.split("=")[0] in ("--cache", "--json-out", "--results"):
            skip = not skip and "=" not in a
            continue
        shown.append(a)
    command = " ".join(["python scripts/evaluate_classifier.py", *shown])
    parts = set(args.parts.split(","))
    sets = load_sources(args.data, dst_mpp=CACHE_MPP, side=CACHE_SIDE, cache=args.cache)
    views = _views(sets, Path(args.data))
    recs, heads = [], []
    if "model" in parts:
        clf = load_model(args.model) if args.model else load_default_model()
        model_name = f"{Path(args.model).name if args.model else 'wbc_classifier.pt'} ({clf.sha256[:12]})"
        part = evaluate_model(lambda cs: clf.predict_proba(centre(cs.crops, clf.io), tta=args.tta), views,
                              args.splits.split(","), model_name + (" tta" if args.tta else ""), command)
        recs, heads = recs + part, heads + headlines("model", part, args)
    if "baseline" in parts:
        part = baseline(views, command)
        recs, heads = recs + part, heads + headlines("baseline", part, args)
    if "loso" in parts:
        part = loso(sets, views, args.loso_steps, 0, args.threads, command, init=args.loso_init,
                    held_out=args.loso_held_out.split(","))
        recs, heads = recs + part, heads + headlines("loso", part, args)
    if args.results:
        sys.path.insert(0, str(REPO / "scripts"))
        from results_table import upsert

        upsert(args.results, heads)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(recs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
