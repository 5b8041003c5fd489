"""Discovery of a dataset folder's images and of the metadata their names and sheets give.

Each dataset kind turns a folder into a list of ``Candidate`` records (path plus label, view,
side, patient and where each value came from), the files it skipped on purpose, and the rows it
could not use. Decoding and cataloguing happen later, in ``curator.importing``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from curator.imaging import DICOM_SUFFIXES, IMAGE_SUFFIXES

LABEL_WORDS = {
    "normal": "normal",
    "benign": "benign",
    "cancer": "cancer",
    "malignant": "cancer",
    "b": "benign",
    "m": "cancer",
}
# mini-DDSM image names: <scanner>_<case>_<sequence>.<SIDE>_<VIEW>.<ext>, e.g. C_0002_1.LEFT_CC.jpg
MINI_DDSM_NAME = re.compile(r"^(?P<scanner>[A-Z])_(?P<case>\d{4})_(?P<seq>\d+)\.(?P<side>LEFT|RIGHT)_(?P<view>CC|MLO)$", re.IGNORECASE)
# Info.txt lines: reference, tissue, class, severity, then x y radius, or "*NOTE 3*" where the
# calcifications are spread over the breast and have no single centre.
MIAS_LINE = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]+)(?:\s+([BM]))?(?:\s+(\d+)\s+(\d+)\s+(\d+)|\s+\*NOTE\s*3\*)?\s*$")


@dataclass
class Candidate:
    """One image file to catalog, with the metadata its dataset gives it."""

    path: Path
    dataset: str
    label: str | None = None
    label_source: str | None = None
    view: str | None = None
    view_source: str | None = None
    side: str | None = None
    side_source: str | None = None
    patient_key: str | None = None
    case_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    reference: str = ""

    def where(self) -> str:
        """Return how to name this candidate in an error line: the sheet row, else the path."""
        return self.reference or str(self.path)


@dataclass
class Discovery:
    """Contents of a dataset folder: candidates, deliberately skipped files and unusable entries."""

    candidates: list[Candidate] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


class SourceError(Exception):
    """A dataset folder or sheet cannot be used at all; the message is one line."""


def normalise_label(word: str | None) -> str | None:
    """Map a dataset's label word (Normal, Malignant, M, ...) to normal, benign or cancer."""
    if word is None:
        return None
    return LABEL_WORDS.get(word.strip().lower())


def _mini_ddsm_skip_reason(path: Path) -> str | None:
    name = path.name
    upper = name.upper()
    if upper.endswith(".ICS"):
        return "ics header"
    if upper.endswith(".OVERLAY"):
        return "overlay"
    if upper.startswith("TAPE_") or "PGM" in path.suffix.upper():
        return "tape image"
    if "_MASK" in upper or upper.startswith("MASK_"):
        return "lesion mask"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image"
    return None


def _mini_ddsm_from_name(path: Path, root: Path) -> Candidate:
    relative = path.relative_to(root)
    label_folder = relative.parts[0] if len(relative.parts) >= 3 else None
    label = normalise_label(label_folder)
    match = MINI_DDSM_NAME.match(path.stem)
    if match:
        case_id = match.group("case")
    elif len(relative.parts) >= 3:
        case_id = relative.parts[1]
    else:
        case_id = None
    candidate = Candidate(path=path, dataset="mini-ddsm", case_id=case_id)
    if label:
        candidate.label, candidate.label_source = label, "folder"
    if match:
        candidate.view, candidate.view_source = match.group("view").upper(), "file name"
        candidate.side, candidate.side_source = match.group("side").upper(), "file name"
        candidate.extra["scanner"] = match.group("scanner").upper()
    if case_id is not None and label_folder is not None:
        # The case number restarts in every label folder: Normal/0002 and Cancer/0002 are two women.
        candidate.patient_key = f"mini-ddsm:{label_folder.lower()}/{case_id}"
    return candidate


def _read_sheet(sheet: Path) -> list[dict[str, str]]:
    if not sheet.exists():
        raise SourceError(f"metadata sheet not found: {sheet}")
    if sheet.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            workbook = openpyxl.load_workbook(sheet, read_only=True, data_only=True)
        except Exception as error:  # noqa: BLE001 - openpyxl raises many unrelated types for bad files
            raise SourceError(f"cannot read metadata sheet {sheet}: {error}") from error
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = [str(cell).strip() if cell is not None else "" for cell in next(rows, ())]
        records = []
        for values in rows:
            cells = ["" if value is None else str(value) for value in values]
            # Spreadsheets often carry formatted but empty rows below the data.
            if any(cell.strip() for cell in cells):
                records.append(dict(zip(header, cells, strict=False)))
        workbook.close()
        return records
    if sheet.suffix.lower() == ".csv":
        try:
            with open(sheet, newline="", encoding="utf-8-sig") as handle:
                return list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise SourceError(f"cannot read metadata sheet {sheet}: {error}") from error
    raise SourceError(f"metadata sheet {sheet} must be .xlsx or .csv")


def _number_text(value: str | None) -> str | None:
    """Turn a sheet cell such as '66.0' or '3' into '66' / '3'; keep other text as it is."""
    if value is None or str(value).strip() in ("", "-"):
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def discover_mini_ddsm(root: Path, sheet: Path | None = None, ignore_missing: bool = False) -> Discovery:
    """List a mini-DDSM folder (``<Label>/<case>/<file>``), using the metadata sheet when given."""
    if not root.is_dir():
        raise SourceError(f"mini-DDSM folder not found: {root}" if not root.exists() else f"{root} is a file; pass the mini-DDSM folder")
    label_folders = [child.name for child in root.iterdir() if child.is_dir() and normalise_label(child.name) in ("normal", "benign", "cancer")]
    if not label_folders:
        # Without this check a folder one level too high would make "mammo-sample" a label folder
        # and merge Normal/0002 with Cancer/0002 into one patient.
        raise SourceError(f"no Normal, Benign or Cancer folder found directly under {root}; pass the folder that contains them")
    discovery = Discovery()
    on_disk: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        reason = _mini_ddsm_skip_reason(path)
        if reason:
            discovery.skipped[reason] += 1
            continue
        key = path.relative_to(root).with_suffix("").as_posix().lower()
        on_disk[key] = path

    from_sheet: set[str] = set()
    if sheet is not None:
        records = _read_sheet(sheet)
        required = {"fullPath", "View", "Side", "Status"}
        if records and not required.issubset(records[0].keys()):
            missing = ", ".join(sorted(required - set(records[0].keys())))
            raise SourceError(f"metadata sheet {sheet} lacks the columns {missing}")
        for index, record in enumerate(records, start=2):
            reference = f"{sheet.name} row {index}"
            full_path = (record.get("fullPath") or "").strip()
            if not full_path:
                discovery.failures.append(f"{reference}: empty fullPath")
                continue
            # Both editions name files relative to the dataset root with Windows separators. The
            # PNG-16 edition ends in .png and the JPEG-8 edition in .jpg, so paths match without the suffix.
            key = PureWindowsPath(full_path).with_suffix("").as_posix().lower()
            path = on_disk.get(key)
            if path is None:
                if ignore_missing:
                    discovery.skipped["listed in sheet, not in folder"] += 1
                else:
                    discovery.failures.append(f"{reference}: file not found: {full_path}")
                continue
            label = normalise_label(record.get("Status"))
            view = (record.get("View") or "").strip().upper()
            side = (record.get("Side") or "").strip().upper()
            if label is None or view not in ("CC", "MLO") or side not in ("LEFT", "RIGHT"):
                discovery.failures.append(
                    f"{reference}: unreadable row (Status={record.get('Status')!r}, View={record.get('View')!r}, Side={record.get('Side')!r})"
                )
                continue
            candidate = _mini_ddsm_from_name(path, root)
            candidate.label, candidate.label_source = label, "metadata sheet"
            candidate.view, candidate.view_source = view, "metadata sheet"
            candidate.side, candidate.side_source = side, "metadata sheet"
            candidate.reference = reference
            if candidate.patient_key is None:
                parts = PureWindowsPath(full_path).parts
                if len(parts) >= 2:
                    candidate.case_id = parts[1]
                    candidate.patient_key = f"mini-ddsm:{parts[0].lower()}/{parts[1]}"
            for column, name in (("Age", "age"), ("Density", "density")):
                value = _number_text(record.get(column))
                if value is not None:
                    candidate.extra[name] = value
            contours = [record.get(column) for column in record if column.startswith("Tumour_Contour")]
            masks = [PureWindowsPath(value).as_posix() for value in contours if value and value.strip() not in ("", "-")]
            if masks:
                candidate.extra["lesion_masks"] = masks
            discovery.candidates.append(candidate)
            from_sheet.add(key)

    for key, path in on_disk.items():
        if key in from_sheet:
            continue
        candidate = _mini_ddsm_from_name(path, root)
        if candidate.label is None and candidate.view is None:
            discovery.skipped["not a mini-DDSM image name"] += 1
            continue
        discovery.candidates.append(candidate)
    return discovery


def discover_mias(root: Path) -> Discovery:
    """List a MIAS folder: ``Info.txt`` plus ``mdbNNN.pgm`` files, all MLO views."""
    info = root / "Info.txt"
    if not info.exists():
        raise SourceError(f"MIAS label file not found: {info}")
    discovery = Discovery()
    findings: dict[str, list[dict[str, Any]]] = {}
    tissue: dict[str, str] = {}
    for number, line in enumerate(info.read_text(encoding="latin-1").splitlines(), start=1):
        stripped = line.strip()
        if not stripped.startswith("mdb"):
            continue
        match = MIAS_LINE.match(stripped)
        if match is None:
            discovery.failures.append(f"Info.txt line {number}: unreadable line {stripped!r}")
            continue
        reference, background, abnormality, severity, x, y, radius = match.groups()
        tissue[reference] = background
        finding: dict[str, Any] = {"class": abnormality}
        if severity:
            finding["severity"] = severity
        if x is not None:
            # MIAS coordinates have their origin at the bottom-left corner of the 1024x1024 image.
            finding.update({"x": int(x), "y": int(y), "radius": int(radius)})
        findings.setdefault(reference, []).append(finding)

    for path in sorted(root.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() != ".pgm":
            if path.name not in ("Info.txt", "Licence.txt", "manifest.csv"):
                discovery.skipped["not a .pgm image"] += 1
            continue
        reference = path.stem.lower()
        if reference not in findings:
            discovery.failures.append(f"{path.name}: not listed in Info.txt")
            continue
        lines = findings[reference]
        severities = {item.get("severity") for item in lines}
        if "M" in severities:
            label = "cancer"
        elif "B" in severities:
            label = "benign"
        elif all(item["class"] == "NORM" for item in lines):
            label = "normal"
        else:
            discovery.failures.append(f"Info.txt: {reference} has an abnormality without a severity")
            continue
        number = int(reference[3:])
        # Info.txt: films come in left/right pairs of one woman; even numbers are left, odd right.
        side = "LEFT" if number % 2 == 0 else "RIGHT"
        candidate = Candidate(
            path=path,
            dataset="mias",
            label=label,
            label_source="Info.txt",
            view="MLO",
            view_source="dataset: MIAS is all MLO",
            side=side,
            side_source="Info.txt numbering rule",
            patient_key=f"mias:{(number + 1) // 2:03d}",
            case_id=reference,
            extra={"tissue": tissue[reference], "findings": lines},
            reference=path.name,
        )
        discovery.candidates.append(candidate)
    return discovery


def discover_folder(root: Path, manifest: Path | None = None) -> Discovery:
    """List a plain folder: labels from parent folder names, or a CSV with path,label,view,side."""
    if not root.is_dir():
        raise SourceError(f"folder not found: {root}")
    discovery = Discovery()
    if manifest is None and (root / "manifest.csv").exists():
        manifest = root / "manifest.csv"
    if manifest is not None:
        try:
            with open(manifest, newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            raise SourceError(f"cannot read manifest {manifest}: {error}") from error
        if rows and "path" not in rows[0]:
            raise SourceError(f"manifest {manifest} has no 'path' column")
        for index, row in enumerate(rows, start=2):
            reference = f"{manifest.name} row {index}"
            relative = (row.get("path") or "").strip()
            path = (root / PureWindowsPath(relative).as_posix()).resolve()
            if not relative:
                discovery.failures.append(f"{reference}: empty path")
                continue
            if not path.is_relative_to(root.resolve()):
                discovery.failures.append(f"{reference}: path {relative!r} points outside {root}")
                continue
            if not path.is_file():
                discovery.failures.append(f"{reference}: file not found: {relative}")
                continue
            label_word = (row.get("label") or "").strip()
            label = normalise_label(label_word) if label_word else None
            view = (row.get("view") or "").strip().upper() or None
            side = (row.get("side") or "").strip().upper() or None
            if (label_word and label is None) or view not in (None, "CC", "MLO") or side not in (None, "LEFT", "RIGHT"):
                discovery.failures.append(f"{reference}: unreadable row (label={label_word!r}, view={row.get('view')!r}, side={row.get('side')!r})")
                continue
            patient = (row.get("patient") or "").strip()
            candidate = Candidate(
                path=path,
                dataset=(row.get("dataset") or "folder").strip() or "folder",
                label=label,
                label_source="manifest" if label else None,
                view=view,
                view_source="manifest" if view else None,
                side=side,
                side_source="manifest" if side else None,
                patient_key=f"folder:{patient}" if patient else None,
                reference=reference,
            )
            discovery.candidates.append(candidate)
        return discovery

    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.suffix.lower() in DICOM_SUFFIXES:
            discovery.skipped["not an image"] += 1
            continue
        label = normalise_label(path.parent.name)
        candidate = Candidate(path=path, dataset="folder")
        if label:
            candidate.label, candidate.label_source = label, "folder"
        discovery.candidates.append(candidate)
    return discovery


def discover_dicom(root: Path) -> Discovery:
    """List DICOM files under a folder (``.dcm``/``.dicom``, or any file with the DICM preamble)."""
    if not root.exists():
        raise SourceError(f"DICOM path not found: {root}")
    discovery = Discovery()
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in paths:
        is_dicom = path.suffix.lower() in DICOM_SUFFIXES
        if not is_dicom:
            with open(path, "rb") as handle:
                is_dicom = handle.read(132)[128:132] == b"DICM"
        if not is_dicom:
            discovery.skipped["not a DICOM file"] += 1
            continue
        candidate = Candidate(path=path, dataset="dicom")
        label = normalise_label(path.parent.name)
        if label:
            candidate.label, candidate.label_source = label, "folder"
        discovery.candidates.append(candidate)
    return discovery
