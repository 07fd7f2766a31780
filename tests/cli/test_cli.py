"""The console scripts speak one language: same spelling for the same idea, help on every flag, plain --help."""
from __future__ import annotations

import argparse
import logging
import re

import pytest

from atso_nnunet.cli import check, common, compare, convert, make_plan, run, segment, synth

PARSERS = {"atso_nnunet_run": run.build_parser, "atso_nnunet_make_plan": make_plan.build_parser,
           "atso_nnunet_synth": synth.build_parser, "atso_nnunet_convert": convert.build_parser,
           "atso_nnunet_segment": segment.build_parser, "atso_nnunet_check": check.build_parser,
           "atso_nnunet_compare": compare.build_parser}
RST = re.compile(r"``|:(func|class|mod|meth|attr|data):`|::\s*$", re.M)


def all_parsers():
    for name, build in PARSERS.items():
        parser = build()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield f"{name} {sub_name}", sub


@pytest.mark.parametrize("name, parser", list(all_parsers()), ids=[n for n, _ in all_parsers()])
def test_every_flag_has_help_and_help_has_no_rst_markup(name, parser):
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"{name} {flag}: no help text"
    text = parser.format_help()
    assert not RST.search(text), f"{name} --help shows reST markup: {RST.search(text).group(0)!r}"


def test_same_idea_same_spelling():
    """Shared ideas use one flag in every command that has them; old spellings are hidden."""
    helps = {name: parser.format_help() for name, parser in all_parsers()}
    for name in ("atso_nnunet_run", "atso_nnunet_synth", "atso_nnunet_convert nih", "atso_nnunet_convert msd"):
        assert "--nnunet-dir DIR" in helps[name], name
    for name in ("atso_nnunet_run", "atso_nnunet_make_plan", "atso_nnunet_synth"):
        assert "--overwrite" in helps[name], name
    for name in ("atso_nnunet_make_plan", "atso_nnunet_synth"):
        assert "--dataset-name" in helps[name] and "--dataset-id" in helps[name], name
    for name in ("atso_nnunet_run", "atso_nnunet_make_plan"):
        assert "--views VIEW [VIEW ...]" in helps[name], name
    for text in helps.values():
        for old in ("--fresh", "--force", "--raw ", "--name "):
            assert old not in text
    assert "--cases" not in helps["atso_nnunet_synth"]  # a count there: --n-cases, as the plan's n_cases


def test_views_are_a_list_in_either_syntax():
    parser = run.build_parser()
    assert parser.parse_args(["--views", "axial", "coronal"]).views == ["axial", "coronal"]
    assert parser.parse_args(["--views", "axial,sagittal"]).views == ["axial", "sagittal"]
    assert parser.parse_args(["--views", "axial,", "coronal"]).views == ["axial", "coronal"]
    assert parser.parse_args([]).views is None
    assert make_plan.build_parser().parse_args(
        ["--raw-dataset", "d", "--unlabeled", "u", "--out", "o", "--dataset-id", "1", "--views", "axial,coronal"]
    ).views == ["axial", "coronal"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--views", "axial,frontal"])


def test_deprecated_spellings_still_work_and_warn(tmp_path, caplog):
    args = run.build_parser().parse_args(["--fresh"])
    assert args.overwrite is True and args.deprecated_options == ["--fresh is deprecated; use --overwrite"]
    args = make_plan.build_parser().parse_args(["--raw-dataset", "d", "--unlabeled", "u", "--out", "o",
                                                "--dataset-id", "1", "--force", "--name", "Mine"])
    assert (args.overwrite, args.dataset_name) == (True, "Mine")
    args = synth.build_parser().parse_args(["--raw", str(tmp_path), "--dataset-id", "5", "--cases", "3",
                                            "--name", "X"])
    assert (args.n_cases, args.dataset_name, common.raw_folder(args)) == (3, "X", tmp_path)
    args = synth.build_parser().parse_args(["--dataset-id", "5"])
    assert (args.n_cases, args.dataset_name, args.overwrite) == (30, None, False)

    with caplog.at_level(logging.WARNING):
        rc = common.run_cli(synth.build_parser(), lambda a: 0, ["--raw", str(tmp_path), "--dataset-id", "5"])
    assert rc == 0 and "--raw is deprecated; use --nnunet-dir DIR" in caplog.text


def test_raw_folder_from_nnunet_dir_or_environment(tmp_path, monkeypatch):
    parser = convert.build_parser()
    args = parser.parse_args(["msd", "--task-folder", "t", "--nnunet-dir", str(tmp_path)])
    assert common.raw_folder(args) == tmp_path.resolve() / "nnUNet_raw"
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "env_raw"))
    assert common.raw_folder(parser.parse_args(["msd", "--task-folder", "t"])) == tmp_path / "env_raw"
    monkeypatch.delenv("nnUNet_raw")
    with pytest.raises(common.InputError, match="--nnunet-dir DIR"):
        common.raw_folder(parser.parse_args(["msd", "--task-folder", "t"]))


def test_verbose_before_or_after_the_subcommand():
    parser = convert.build_parser()
    assert parser.parse_args(["-v", "msd", "--task-folder", "t"]).verbose is True
    assert parser.parse_args(["msd", "--task-folder", "t", "-v"]).verbose is True
    assert parser.parse_args(["msd", "--task-folder", "t"]).verbose is False


def test_plain_strips_rst():
    assert common.plain("See ``x`` and :func:`~a.b`. Example::\n\n    cmd") == "See x and a.b. Example:\n\n    cmd"


def test_jobs_per_gpu_flag_reaches_executor_and_is_checked(tmp_path):
    from atso_nnunet.cli.run import build_parser, make_executor_from_args
    from atso_nnunet.errors import InputError

    def executor(*flags):
        args = build_parser().parse_args(["-d", "synthetic", "-f", "10pct", *flags])
        return make_executor_from_args(args, tmp_path)

    ex = executor("--gpus", "0,1", "--jobs-per-gpu", "3")
    assert ex.gpu_slots == ["0", "1"] * 3 and ex.max_parallel == 6
    assert executor("--gpus", "0,1").max_parallel == 2
    for flags, match in ((["--jobs-per-gpu", "2"], "needs local GPUs"),
                         (["--gpus", "0", "--executor", "slurm", "--jobs-per-gpu", "2"], "slurm-gpus-per-job")):
        with pytest.raises(InputError, match=match):
            executor(*flags)
    with pytest.raises(SystemExit):     # refused while parsing (issue 29)
        executor("--gpus", "0", "--jobs-per-gpu", "0")


def test_jobs_per_gpu_without_gpus_is_refused_on_dry_run_too(tmp_path, caplog):
    args = ["-d", "synthetic", "-f", "10pct", "--nnunet-dir", str(tmp_path / "nn"), "--run-dir", str(tmp_path / "run"),
            "--dry-run", "--jobs-per-gpu", "2"]
    assert run.main(args) == 2
    assert "--jobs-per-gpu 2 needs local GPUs" in caplog.text
    assert not (tmp_path / "run").exists()


def test_every_console_script_of_setup_py_reaches_a_main():
    """Each ``atso_nnunet_*`` entry point names a module of the package and its ``main(argv=None)``."""
    import importlib
    import inspect
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    scripts = dict(re.findall(r'"(atso_nnunet_\w+)=([\w.]+:main)"', text))
    assert {"atso_nnunet_run", "atso_nnunet_diagnose", "atso_nnunet_view_volumes", "atso_nnunet_publish"} <= set(scripts)
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        main = getattr(importlib.import_module(module), attr)
        assert list(inspect.signature(main).parameters) == ["argv"], name


@pytest.mark.parametrize("module, argv, unknown", [
    ("run", ["-d", "synthetic", "-f", "10pct", "--generation", "2", "--dry-run"], "--generation"),
    ("compare", ["-d", "synthetic", "-f", "10pct", "--seed", "0", "--report-only"], "--seed"),
])
def test_option_names_are_exact_no_prefix_matching(module, argv, unknown, capsys):
    """Issue 29: argparse's prefix matching accepted --generation for --generations."""
    import importlib

    main_fn = importlib.import_module(f"atso_nnunet.cli.{module}").main
    with pytest.raises(SystemExit) as e:
        main_fn(argv)
    assert e.value.code == 2 and unknown in capsys.readouterr().err


def test_every_console_script_parser_refuses_abbreviations():
    import inspect
    from pathlib import Path

    from atso_nnunet import cli

    folder = Path(inspect.getfile(cli)).parent
    for module in sorted(folder.glob("*.py")):
        text = module.read_text()
        assert text.count("ArgumentParser(") == text.count("allow_abbrev=False"), \
            f"{module.name}: every ArgumentParser needs allow_abbrev=False"
