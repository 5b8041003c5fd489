"""Scores the white-marking detector and geometry checks on the hand-labelled sample manifests.

Usage: python bench/detector_eval.py [--data DIR] [--sheets DIR]

--data defaults to shared/data next to the repository.

For each manifest it prints TP, FP, FN, TN, precision and recall, and the
misclassified files with their scores. It prints the same counts for a naive
baseline measured in the same run, which marks a film when more than
--baseline-fraction of its pixels are near-saturated. Then come the geometry
disagreements and the time per image. With --sheets it also writes contact sheets
of the detections and of the paint-out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curator.detectors.contact import contact_sheet  # noqa: E402
from curator.detectors.evaluate import confusion, evaluate_manifest  # noqa: E402
from curator.detectors.markings import DEFAULT_THRESHOLD  # noqa: E402
from curator.detectors.paintout import paint_out  # noqa: E402

MANIFESTS = ("mammo-sample/manifest.csv", "mias-sample/manifest.csv")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _format_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_report(name: str, report: dict, baseline_fraction: float) -> None:
    """Print the detector's counts, its errors, the baseline and the geometry checks for one manifest."""
    print(f"\n== {name}: {report['images']} images, threshold {report['threshold']}")
    print(
        f"detector  TP {report['tp']:3d}  FP {report['fp']:3d}  FN {report['fn']:3d}  TN {report['tn']:3d}"
        f"  precision {_format_ratio(report['precision'])}  recall {_format_ratio(report['recall'])}"
    )
    results = report["results"]
    baseline = confusion(
        [record["expected_marked"] for record in results],
        [record["saturated_fraction"] > baseline_fraction for record in results],
    )
    print(
        f"baseline  TP {baseline['tp']:3d}  FP {baseline['fp']:3d}  FN {baseline['fn']:3d}  TN {baseline['tn']:3d}"
        f"  precision {_format_ratio(baseline['precision'])}  recall {_format_ratio(baseline['recall'])}"
        f"  (marked when > {baseline_fraction:.2%} of pixels are >= 245)"
    )
    if report["misclassified"]:
        print("misclassified:")
        for entry in report["misclassified"]:
            expected = "marked" if entry["expected"] else "unmarked"
            print(f"  {entry['path']}  labelled {expected}, score {entry['score']:.3f}")
    else:
        print("misclassified: none")

    geometry = report["geometry"]
    side_wrong = geometry["side_disagreements"]
    view_wrong = geometry["view_disagreements"]
    print(
        f"chest wall vs catalogued side: {len(side_wrong)} of {geometry['side_checked']} disagree"
        f" ({report['images'] - geometry['side_checked']} without a known convention)"
    )
    for path in side_wrong:
        print(f"  {path}")
    print(f"view guess vs catalogued view: {len(view_wrong)} of {geometry['view_checked']} disagree")
    for record in results:
        if record["view_agrees"] is False:
            print(f"  {record['path']}  catalogued {record['view']}, guessed {record['view_guess']} (score {record['view_score']:.2f})")
    print(
        f"time: {report['seconds_per_image'] * 1000:.1f} ms per image in a worker (decoding included),"
        f" {report['wall_seconds']:.2f} s wall for the manifest"
    )


def write_sheets(data: Path, reports: list[tuple[str, dict]], sheets: Path) -> None:
    """Write detection and paint-out contact sheets for flagged, labelled-marked and trap films."""
    for name, report in reports:
        root = data / Path(name).parent
        chosen = [
            record for record in report["results"]
            if record["marked"] or record["expected_marked"] or record["saturated_fraction"] > 0.0005
        ]
        if not chosen:
            continue
        detections = []
        paint_pairs = []
        paint_boxes = []
        for record in chosen:
            image = cv2.imread(str(root / record["path"]), cv2.IMREAD_GRAYSCALE)
            label = f"{Path(record['path']).stem} {record['score']:.2f}"
            detections.append((label, image, None))
            if record["boxes"]:
                paint_pairs.append((label, image, paint_out(image, [tuple(box) for box in record["boxes"]])))
                paint_boxes.append([tuple(box) for box in record["boxes"]])
        stem = Path(name).parent.name
        written = contact_sheet(
            detections, sheets / f"{stem}-detections.png", boxes=[r["boxes"] for r in chosen], columns=8
        )
        print(f"wrote {written} ({len(detections)} films)")
        if paint_pairs:
            written = contact_sheet(paint_pairs, sheets / f"{stem}-paintout.png", boxes=paint_boxes, columns=4)
            print(f"wrote {written} ({len(paint_pairs)} films)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder containing mammo-sample/ and mias-sample/"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="score at or above which a film counts as marked")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--baseline-fraction", type=float, default=0.005,
        help="baseline rule: a film is marked when more than this fraction of its pixels are >= 245",
    )
    parser.add_argument("--sheets", type=Path, default=None, help="folder to write contact sheets into")
    args = parser.parse_args(argv)

    reports = []
    for name in MANIFESTS:
        manifest = args.data / name
        if not manifest.exists():
            print(f"skipped {manifest}: not found")
            continue
        report = evaluate_manifest(manifest, args.threshold, processes=args.processes)
        print_report(name, report, args.baseline_fraction)
        reports.append((name, report))
    if not reports:
        print(f"no manifest found under {args.data}", file=sys.stderr)
        return 1
    if args.sheets is not None:
        write_sheets(args.data, reports, args.sheets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
