"""Third-party data is never silently stale: a file-backed dataset with no `content_key()` gets
the files its path parameters name hashed into every run's identity, through the real CLI."""

from __future__ import annotations

import logging

import pytest
from file_plugin import write_chains
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.registry import reset_default_registry

runner = CliRunner()

GRID = """
seeds = [0]
[train]
epochs = 2
batch_size = 32
[params.dataset."{name}"]
{key} = "{path}"
[[study]]
datasets = ["{name}"]
protocols = ["iid"]
encoders = ["tiny"]
"""


@pytest.fixture
def file_plugin_env(synthetic_env, monkeypatch):
    monkeypatch.setenv("BENCHBASE_EXTRA_PLUGINS", "synthetic_plugin,file_plugin")
    reset_default_registry()
    yield
    reset_default_registry()


@pytest.mark.parametrize(("name", "key"), [("file/chains", "source"), ("file/old-chains", "path")])
def test_cutting_a_third_party_csv_makes_its_runs_new(file_plugin_env, tmp_path, name, key):
    data = write_chains(tmp_path / "chains.csv", 80)
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID.format(name=name, key=key, path=data))
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1"]
    result = runner.invoke(app, [*args, "--leaderboard-out", str(tmp_path / "lb")])
    assert result.exit_code == 0, result.output
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert "1 runs (1 already finished)" in dry.output, dry.output
    write_chains(data, 60)  # the file cut in place: same path, same parameters
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "1 runs (0 already finished)" in dry.output, dry.output


def test_a_path_that_cannot_be_hashed_is_warned_about_once(file_plugin_env, tmp_path, caplog):
    from benchbase.running import data_keys as grid_module

    grid_module._UNHASHABLE_WARNED.clear()
    grid = tmp_path / "grid.toml"
    missing = tmp_path / "absent.csv"
    grid.write_text(GRID.format(name="file/chains", key="source", path=missing).replace("[0]", "[0, 1, 2]"))
    with caplog.at_level(logging.WARNING, logger="benchbase"):
        dry = runner.invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--dry-run"])
    assert "3 runs (0 already finished)" in dry.output, dry.output  # planned; the plugin's own error comes later
    warnings = [r.getMessage() for r in caplog.records if "cannot hash" in r.getMessage()]
    assert len(warnings) == 1 and str(missing) in warnings[0] and "parameter source" in warnings[0], warnings


def test_the_conformance_kit_takes_parameters_and_names_what_failed(file_plugin_env, tmp_path):
    from benchbase.compute.protocols import IID
    from benchbase.testing import ConformanceError, check_protocol, check_registered

    data = write_chains(tmp_path / "chains.csv", 40)
    check_registered("dataset", "file/chains", params={"source": str(data)})  # a file-backed dataset, with its file
    with pytest.raises(ConformanceError) as error:  # a directory for a file: named, not a raw IsADirectoryError
        check_registered("dataset", "file/chains", params={"source": str(tmp_path)})
    assert "dataset 'file/chains'" in str(error.value) and "IsADirectoryError" in str(error.value)
    with pytest.raises(ConformanceError, match="dataset 'file/chains'.*pass params="):
        check_registered("dataset", "file/chains")  # its defaults name no file
    check_protocol(IID, params={"test_fraction": 0.3, "valid_fraction": 0.2})

    class Broken(IID):
        name = "broken-split"

        def split(self, dataset, task, seed):
            raise ValueError("no split today")

    with pytest.raises(ConformanceError, match="protocol 'broken-split': check_protocol failed: ValueError: no split"):
        check_protocol(Broken)
