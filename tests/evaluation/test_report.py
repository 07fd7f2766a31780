import csv
import json

from atso_nnunet.evaluation.report import GenerationRecord, RunReport, render_markdown, write_report


def _report():
    return RunReport(
        method="atso", plan_name="tiny", metric="mean",
        generations=[
            GenerationRecord(0, reference_dsc=0.7141, test_dsc=0.7262, test_dsc_mean=0.7262, test_dsc_global=0.73,
                             half_models={"M1@R1": 0.7085, "M1@R2": 0.7196}),
            GenerationRecord(1, reference_dsc=0.7569, test_dsc=0.7882,
                             half_models={"M1@R1": 0.7230, "M2@R1": 0.7561, "M1@R2": 0.7576, "M2@R2": 0.7557},
                             agreement={"R1": 0.9, "R2": 0.91}, change=0.88, empty_pseudo_labels=0),
        ],
        final={"test_dsc_mean": 0.8, "test_dsc_global": 0.81},
        how_evaluated="M_t on E: majority vote of both half-models x 3 views.",
        logs={"g0/train/M0/axial": "logs/g0/train/M0/axial.log"},
    )


def test_markdown_has_table1_and_table4_rows():
    md = render_markdown(_report())
    assert "| Generation | @R (pseudo-labels, mean) | @E mean | @E global |" in md  # one column per figure
    assert "| G0 | 71.41 | 72.62 | 73.00 |" in md
    assert "| G1 | 75.69 | 78.82 | – |" in md  # the headline value fills its own column
    # Table 4 row of G1 with the four half-model cells, updated R_t and M_t @ E
    assert "| G1 | 72.30 | 75.61 | 75.76 | 75.57 | 75.69 | 78.82 |" in md
    # unknown entries render as a dash
    assert "| G0 | 70.85 | – | 71.96 | – |" in md
    assert "test DSC (global): 81.00" in md


def test_write_report_files(tmp_path):
    files = write_report(_report(), tmp_path)
    assert set(files) == {"md", "csv", "json", "png", "logs"}
    md = (tmp_path / "report.md").read_text()
    assert "logs/g0" not in md and "[report_logs.md](report_logs.md)" in md  # logs listed apart
    assert "- `g0/train/M0/axial`: [logs/g0/train/M0/axial.log](logs/g0/train/M0/axial.log)" in \
        (tmp_path / "report_logs.md").read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["method"] == "atso"
    assert [g["generation"] for g in data["generations"]] == [0, 1]
    assert data["generations"][0]["change"] is None
    assert data["final"] == {"test_dsc_mean": 0.8, "test_dsc_global": 0.81}
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert rows[1]["agreement_R1"] == "0.900000"
    assert rows[0]["change"] == ""
    assert rows[-1]["generation"] == "final"
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_empty_report_has_no_plot(tmp_path):
    files = write_report(RunReport(method="supervised", plan_name="x", metric="global"), tmp_path)
    assert "png" not in files
    assert json.loads((tmp_path / "report.json").read_text())["final"] == {"test_dsc_mean": None,
                                                                          "test_dsc_global": None}


def test_without_a_test_set_the_report_says_it_cannot_tell():
    report = _report()
    assert "cannot tell" not in render_markdown(report)
    report.test_cases = 0
    report.final = None
    for g in report.generations:
        g.test_dsc = g.test_dsc_mean = g.test_dsc_global = None
    md = render_markdown(report)
    assert "No test set: this run cannot tell whether the model improved" in md
    assert "label-free monitors" in md and "--test-fraction" in md
    report.test_cases = 2          # a test set without ground truth
    md = render_markdown(report)
    assert "cannot tell (yet) whether the model improved" in md and "no ground truth" in md
