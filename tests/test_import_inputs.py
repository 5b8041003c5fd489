"""Importers on inputs built in the test: bad files, sheets, 16-bit PNG, DICOM, interrupted runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from curator.cli import app
from curator.db import Catalog
from curator.importing import run_import
from curator.models import Image
from curator.sources import discover_dicom, discover_folder, discover_mini_ddsm


def _film(height: int = 200, width: int = 120, seed: int = 0) -> np.ndarray:
    """A black film with a bright half-ellipse breast on the left edge."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), dtype=np.uint8)
    cv2.ellipse(image, (0, height // 2), (width * 2 // 3, height // 3), 0, -90, 90, 180, -1)
    noise = rng.integers(0, 30, size=image.shape, dtype=np.uint8)
    return cv2.add(image, noise)


def _mini_ddsm_tree(root: Path) -> None:
    for label, case, scanner in (("Normal", "0001", "A"), ("Cancer", "0001", "C")):
        folder = root / label / case
        folder.mkdir(parents=True)
        for index, (side, view) in enumerate((("LEFT", "CC"), ("RIGHT", "MLO"))):
            cv2.imwrite(str(folder / f"{scanner}_{case}_1.{side}_{view}.jpg"), _film(seed=index + 10 * len(case) + (0 if label == "Normal" else 100)))
        cv2.imwrite(str(folder / f"{scanner}_{case}_1.LEFT_CC_Mask.jpg"), _film(seed=9))
        (folder / f"{scanner}-{case}-1.ics").write_text("ics")


def test_truncated_jpeg_fails_alone(tmp_path, sqlite_catalog, sqlite_settings):
    root = tmp_path / "mini"
    _mini_ddsm_tree(root)
    broken = root / "Normal" / "0001" / "A_0001_1.RIGHT_MLO.jpg"
    broken.write_bytes(broken.read_bytes()[:300])

    report = run_import(sqlite_catalog, sqlite_settings, discover_mini_ddsm(root), workers=1)

    assert report.imported == 3
    assert report.failed == 1
    assert "A_0001_1.RIGHT_MLO.jpg" in report.failures[0]
    assert report.skipped["lesion mask"] == 2
    assert report.skipped["ics header"] == 2


def test_sheet_with_missing_file_and_bad_row(tmp_path, sqlite_catalog, sqlite_settings):
    root = tmp_path / "mini"
    _mini_ddsm_tree(root)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "fullPath,fileName,View,Side,Status,Tumour_Contour,Tumour_Contour2,Age,Density\n"
        "Normal\\0001\\A_0001_1.LEFT_CC.png,A_0001_1.LEFT_CC.png,CC,LEFT,Normal,-,-,50.0,2.0\n"
        "Normal\\0009\\A_0009_1.LEFT_CC.png,A_0009_1.LEFT_CC.png,CC,LEFT,Normal,-,-,50,2\n"
        "Cancer\\0001\\C_0001_1.LEFT_CC.png,C_0001_1.LEFT_CC.png,XX,LEFT,Cancer,-,-,61,3\n"
    )
    discovery = discover_mini_ddsm(root, sheet)

    assert discovery.failures == [
        "sheet.csv row 3: file not found: Normal\\0009\\A_0009_1.LEFT_CC.png",
        "sheet.csv row 4: unreadable row (Status='Cancer', View='XX', Side='LEFT')",
    ]
    report = run_import(sqlite_catalog, sqlite_settings, discovery, workers=1)
    # The bad row's file is still found on disk and catalogued from its name.
    assert report.imported == 4
    with sqlite_catalog.session() as session:
        from_sheet = session.scalars(select(Image).where(Image.label_source == "metadata sheet")).all()
    assert len(from_sheet) == 1
    assert from_sheet[0].extra["age"] == "50"


def test_cli_import_exit_code_and_error_lines(tmp_path):
    root = tmp_path / "mini"
    _mini_ddsm_tree(root)
    (root / "Cancer" / "0001" / "C_0001_1.LEFT_CC.jpg").write_bytes(b"\xff\xd8\xff garbage")
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["--home", str(home), "import", "mini-ddsm", str(root)])
    assert result.exit_code == 1
    assert "imported 3 images" in result.output
    assert "C_0001_1.LEFT_CC.jpg" in result.output
    assert "Traceback" not in result.output


def test_cli_unknown_query_word_exits_nonzero(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "query", "cancr"])
    assert result.exit_code == 1
    assert "unknown query word 'cancr'" in result.output
    assert "cancer" in result.output


def test_missing_folder_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), "import", "mias", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "MIAS label file not found" in result.output


def test_sixteen_bit_png_is_rescaled_not_clipped(tmp_path, sqlite_catalog, sqlite_settings):
    folder = tmp_path / "folder" / "normal"
    folder.mkdir(parents=True)
    gradient = np.tile(np.linspace(0, 4095, 64, dtype=np.float64), (64, 1)).astype(np.uint16)
    cv2.imwrite(str(folder / "scan.png"), gradient)

    report = run_import(sqlite_catalog, sqlite_settings, discover_folder(tmp_path / "folder"), work_size=64, workers=1)

    assert report.imported == 1
    with sqlite_catalog.session() as session:
        image = session.scalars(select(Image)).one()
    assert image.bit_depth == 16
    assert image.label == "normal"
    work = cv2.imread(str(sqlite_settings.home / image.work_path), cv2.IMREAD_UNCHANGED)
    assert work.dtype == np.uint8
    assert work.max() == 255
    assert work.min() == 0
    # The middle column of a 0..4095 ramp lands in the middle of 0..255, not at the clip value.
    assert 110 <= int(work[:, 32].mean()) <= 145


def test_folder_manifest_with_bad_rows(tmp_path, sqlite_catalog, sqlite_settings):
    root = tmp_path / "folder"
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), _film())
    (root / "manifest.csv").write_text("path,label,view,side\na.png,cancer,cc,left\nmissing.png,normal,CC,LEFT\na.png,weird,CC,LEFT\n../outside.png,normal,CC,LEFT\n")
    discovery = discover_folder(root)
    assert [candidate.label for candidate in discovery.candidates] == ["cancer"]
    assert discovery.candidates[0].view == "CC"
    assert len(discovery.failures) == 3
    assert "row 3: file not found: missing.png" in discovery.failures[0]
    assert "row 4: unreadable row" in discovery.failures[1]
    assert "row 5" in discovery.failures[2]


def _write_dicom(path: Path, pixels: np.ndarray, photometric: str, patient_id: str, **extra) -> None:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.PatientName = "Doe^Jane"
    dataset.PatientID = patient_id
    dataset.PatientBirthDate = "19600101"
    dataset.Modality = "MG"
    dataset.ViewPosition = "MLO"
    dataset.ImageLaterality = "R"
    dataset.PhotometricInterpretation = photometric
    dataset.SamplesPerPixel = 1
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    for key, value in extra.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)


def test_dicom_monochrome1_shows_tissue_bright_and_hides_identity(tmp_path, sqlite_catalog, sqlite_settings):
    folder = tmp_path / "dicom" / "cancer"
    folder.mkdir(parents=True)
    breast = _film(128, 96).astype(np.float64) / 255.0
    monochrome2 = np.rint(breast * 4000).astype(np.uint16)
    monochrome1 = (4000 - monochrome2).astype(np.uint16)
    _write_dicom(folder / "m2.dcm", monochrome2, "MONOCHROME2", "PID-12345")
    _write_dicom(folder / "m1.dcm", monochrome1, "MONOCHROME1", "PID-12345", RescaleSlope=1, RescaleIntercept=0)

    report = run_import(sqlite_catalog, sqlite_settings, discover_dicom(tmp_path / "dicom"), work_size=64, workers=1)

    assert report.imported == 2
    with sqlite_catalog.session() as session:
        images = {Path(image.file_path).name: image for image in session.scalars(select(Image))}
    works = {name: cv2.imread(str(sqlite_settings.home / image.work_path), cv2.IMREAD_GRAYSCALE) for name, image in images.items()}
    # Breast on the left edge: bright on the left in both encodings.
    for name, work in works.items():
        assert work[:, :16].mean() > work[:, -16:].mean() + 40, name
    assert np.abs(works["m1.dcm"].astype(int) - works["m2.dcm"].astype(int)).max() <= 2
    for image in images.values():
        assert image.view == "MLO"
        assert image.side == "RIGHT"
        assert image.label == "cancer"
        assert image.bit_depth == 16
        assert image.patient_key.startswith("dicom:")
    assert images["m1.dcm"].patient_key == images["m2.dcm"].patient_key

    sqlite_catalog.dispose()
    database = Path(sqlite_settings.database_url.removeprefix("sqlite:///"))
    with sqlite_catalog.engine.connect() as connection:
        connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    stored = database.read_bytes()
    for secret in (b"PID-12345", b"Doe", b"19600101"):
        assert secret not in stored


def test_dicom_window_applied_after_rescale(tmp_path, sqlite_catalog, sqlite_settings):
    from curator.dicom import decode_dicom

    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))
    path = tmp_path / "w.dcm"
    # Rescale doubles the stored values; the window then keeps 1000..3000 of the rescaled range.
    _write_dicom(path, ramp, "MONOCHROME2", "X", RescaleSlope=2, RescaleIntercept=0, WindowCenter=2000, WindowWidth=2000)
    decoded = decode_dicom(path.read_bytes(), "w.dcm")
    row = decoded.pixels[0].astype(np.int64)
    stored = ramp[0].astype(np.int64) * 2
    assert row[stored <= 1000].max() == 0
    assert row[stored >= 3000].min() == 65535
    inside = (stored > 1100) & (stored < 2900)
    assert np.all(np.diff(row[inside]) > 0)


def test_killed_import_resumes_to_clean_result(tmp_path, mammo_sample):
    home_killed = tmp_path / "killed"
    env = dict(os.environ, CURATOR_HOME=str(home_killed))
    command = [sys.executable, "-m", "curator", "import", "mini-ddsm", str(mammo_sample), "--workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    database = home_killed / "catalog.db"
    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline and process.poll() is None:
        if database.exists():
            try:
                catalog = Catalog(f"sqlite:///{database}", upgrade_schema=False)
                with catalog.session() as session:
                    count = session.scalar(select(func.count(Image.id))) or 0
                catalog.dispose()
            except Exception:  # noqa: BLE001 - the schema may not be there yet
                count = 0
            if count >= 32:
                break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 0 < count < 92, "the import finished before it could be killed; the test needs a slower import"

    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean_home = tmp_path / "clean"
    subprocess.run(command, env=dict(os.environ, CURATOR_HOME=str(clean_home)), check=True, capture_output=True)

    def rows(home: Path) -> set[tuple]:
        catalog = Catalog(f"sqlite:///{home / 'catalog.db'}")
        with catalog.session() as session:
            result = {(i.sha256, i.label, i.view, i.side, i.patient_key, i.work_path) for i in session.scalars(select(Image))}
        catalog.dispose()
        return result

    assert rows(home_killed) == rows(clean_home)
    assert len(rows(home_killed)) == 92
    leftovers = [path for path in (home_killed / "store").rglob(".tmp-*")]
    for path in leftovers:
        path.unlink()


def test_query_and_stats_import_no_heavy_frameworks(tmp_path):
    script = (
        "import sys\n"
        "from curator.cli import app\n"
        "for argv in (['query', 'cancer', 'CC-left'], ['stats'], ['query', '--count', 'synthetic']):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    env = dict(os.environ, CURATOR_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


@pytest.mark.skipif(shutil.which("curator") is None and not (Path(sys.executable).parent / "curator").exists(), reason="console script not installed")
def test_console_script_runs(tmp_path):
    script = shutil.which("curator") or str(Path(sys.executable).parent / "curator")
    result = subprocess.run([script, "--home", str(tmp_path / "h"), "stats"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "0 images" in result.stdout


def test_mini_ddsm_parent_folder_rejected(tmp_path):
    from curator.sources import SourceError

    _mini_ddsm_tree(tmp_path / "data" / "mini")
    with pytest.raises(SourceError, match="no Normal, Benign or Cancer folder"):
        discover_mini_ddsm(tmp_path / "data")


def test_cli_negated_word_after_command(tmp_path):
    root = tmp_path / "mini"
    _mini_ddsm_tree(root)
    home = ["--home", str(tmp_path / "home")]
    runner = CliRunner()
    assert runner.invoke(app, home + ["import", "mini-ddsm", str(root)]).exit_code == 0
    result = runner.invoke(app, home + ["query", "--count", "-normal"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2"
    result = runner.invoke(app, home + ["query", "-normal", "--count"])
    assert result.output.strip() == "2"


def test_cli_bad_database_url_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["--db", "nonsense", "stats"])
    assert result.exit_code == 1
    assert "invalid database URL" in result.output
    assert "Traceback" not in result.output
