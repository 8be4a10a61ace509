"""`difflod batch`'s inputs: manifests (CSV, JSON), folders, budgets, names, and the
one-line errors (exit 2) for bad ones. No model runs here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from difflod.cli import main
from difflod.errors import DiffLodError
from difflod.run.manifest import Budget, ManifestError, parse_budgets, read_jobs

OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def _tree(root: Path, files: list[str]) -> None:
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(OBJ)


# ---- budgets -------------------------------------------------------------------
def test_budgets_counts_and_fractions() -> None:
    b = parse_budgets("5%, 0.01;300", "x")
    assert [x.text for x in b] == ["5%", "0.01", "300"]
    assert b[0].fraction == pytest.approx(0.05) and b[1].fraction == pytest.approx(0.01)
    assert b[2].count == 300
    assert [x.count for x in parse_budgets([2000, "500"], "x")] == [2000, 500]
    # a fraction is of the model's own count, rounded: 5% of 3010 = 150.5 -> 150 (Python's
    # round, half to even), 0.01 of 3010 = 30.1 -> 30
    assert b[0].resolve(3010, "m") == 150 and b[1].resolve(3010, "m") == 30
    assert Budget("7%", fraction=0.07).resolve(1000, "m") == 70


def test_budget_outside_the_models_range_names_the_model() -> None:
    with pytest.raises(DiffLodError, match=r"m\.obj: budget 1% is 2 triangles, outside \[4, 200\)"):
        parse_budgets("1%", "x")[0].resolve(200, "m.obj")
    with pytest.raises(DiffLodError, match=r"budget 500 is 500 triangles, outside \[4, 400\)"):
        parse_budgets("500", "x")[0].resolve(400, "m.obj")


@pytest.mark.parametrize("text, message", [
    ("5x", r"'5x' is not a count or a fraction"),
    ("150%", r"'150%' must be a count or a fraction between 0 and 1"),
    ("1.5", r"'1.5' must be a count or a fraction between 0 and 1"),
    ("0", r"0 is below the minimum of 4"),
    ("", r"no budget given"),
    (True, r"expected a count or a fraction, got True"),
])
def test_bad_budgets(text: object, message: str) -> None:
    with pytest.raises(ManifestError, match=r"^where: triangles: " + message):
        parse_budgets(text, "where")


# ---- manifests -----------------------------------------------------------------
def test_csv_manifest_rows_settings_and_names(tmp_path: Path) -> None:
    _tree(tmp_path, ["lib/chairs/oak.obj", "lib/chairs/oak.glb", "lib/Oak.obj"])
    (tmp_path / "lib/m.csv").write_text(
        "# a comment\n"
        "model,triangles,iter,learning_rate,name\n"
        "chairs/oak.obj,\"5%,1%\",10,,\n"
        "chairs/oak.glb,300;100,,\"[0.001, 0.01]\",\n"
        "\n"
        "asset:sphere?triangles=400,50,,,ball\n"
        f"{tmp_path / 'lib/Oak.obj'},,,,\n")
    jobs = read_jobs(tmp_path / "lib/m.csv", "10%")
    assert [j.name for j in jobs] == ["chairs__oak", "chairs__oak_glb", "ball", "Oak"]
    assert jobs[0].model == str((tmp_path / "lib/chairs/oak.obj").resolve())
    assert [b.text for b in jobs[0].budgets] == ["5%", "1%"]
    assert [b.count for b in jobs[1].budgets] == [300, 100]
    assert [b.text for b in jobs[3].budgets] == ["10%"]  # the command line's, for an empty cell
    assert jobs[0].settings == {"iter": 10}
    assert jobs[1].settings == {"learning_rate": [0.001, 0.01]}
    assert jobs[2].model == "asset:sphere?triangles=400" and jobs[2].settings == {}
    assert jobs[1].where == f"{tmp_path / 'lib/m.csv'}: line 4"


def test_json_manifest(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.obj"])
    (tmp_path / "m.json").write_text(json.dumps([
        {"model": "a.obj", "triangles": [100, "2%"], "seed": 3},
        {"model": "asset:knot", "triangles": 0.5}]))
    jobs = read_jobs(tmp_path / "m.json")
    assert [j.name for j in jobs] == ["a", "asset_knot"]
    assert [b.text for b in jobs[0].budgets] == ["100", "2%"] and jobs[0].settings == {"seed": 3}
    assert jobs[1].budgets[0].fraction == 0.5


def test_colliding_names_stay_unique(tmp_path: Path) -> None:
    # a/b.obj and a__b.obj both make "a__b"; A/B.obj too, case-insensitively
    _tree(tmp_path, ["a/b.obj", "a__b.obj", "A/B.glb", "x y#z.obj"])
    jobs = read_jobs(tmp_path, "10")
    names = [j.name for j in jobs]
    assert len({n.lower() for n in names}) == 4, names
    assert "x_y_z" in names
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
               for n in names)


@pytest.mark.parametrize("text, message", [
    ("model,triangles\nmissing.obj,10\n", r"m\.csv: line 2: no such model file 'missing\.obj'"),
    ("file,triangles\na.obj,10\n", r"m\.csv: line 1: the header has no 'model' column"),
    ("model,triangles,iterations\na.obj,10,5\n",
     r"m\.csv: line 2: unknown field 'iterations'; valid: model, triangles, name"),
    ("model,triangles,iter\na.obj,10,5\na.obj,10,many\n",
     r"m\.csv: line 3: 'iter' must be an integer, got 'many'"),
    ("model,triangles\na.obj,10\na.obj,5x\n", r"m\.csv: line 3: triangles: '5x' is not a count"),
    ("model,triangles\na.obj\n", r"m\.csv: line 2: no 'triangles' for this model"),
    ("model,triangles,ref_mesh\na.obj,10,b.obj\n", r"m\.csv: line 2: 'ref_mesh' is set by the"),
    ("model,triangles,name\na.obj,10,x\na.obj,20,x\n", r"m\.csv: line 2: name 'x' is used by "),
    ("model,triangles,name\na.obj,10,../x\n", r"m\.csv: line 2: name '\.\./x' is not a safe"),
    ("model,triangles\n,10\n", r"m\.csv: line 2: 'model' is missing or empty"),
    ("model,triangles\na.obj,10,9\n", r"m\.csv: line 2: 3 cells but the header has 2 columns"),
    ("model,triangles\n", r"m\.csv: the manifest lists no model"),
])
def test_bad_csv_manifest_exits_2_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    _tree(tmp_path, ["a.obj"])
    (tmp_path / "m.csv").write_text(text)
    rc = main(["batch", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("difflod: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing written before the batch could start


@pytest.mark.parametrize("text, message", [
    ('{"model": "a.obj"}', r"m\.json: expected a JSON list of rows"),
    ('[{"model": "a.obj",\n "triangles": 10,}]', r"m\.json: line 2: invalid JSON"),
    ('[{"model": "a.obj", "triangles": 10}, 3]', r"m\.json: row 2: expected an object, got 3"),
    ('[{"model": "a.obj", "triangles": {"n": 3}}]', r"m\.json: row 1: triangles: expected a "),
    ('[{"model": "a.obj", "triangles": 10, "loss": "l3"}]', r"m\.json: row 1: .*'loss'"),
])
def test_bad_json_manifest(tmp_path: Path, text: str, message: str) -> None:
    _tree(tmp_path, ["a.obj"])
    (tmp_path / "m.json").write_text(text)
    from difflod.run.batch import batch

    with pytest.raises(ManifestError, match=message):
        batch(tmp_path / "m.json", tmp_path / "out", quiet=True)


def test_folder_needs_budgets_and_skips_its_output(tmp_path: Path) -> None:
    _tree(tmp_path, ["lib/a.obj", "lib/sub/b.GLB", "lib/out/a/mesh.glb", "lib/.hidden.obj",
                     "lib/notes.txt"])
    with pytest.raises(ManifestError, match=r"lib: a folder needs --triangles"):
        read_jobs(tmp_path / "lib")
    jobs = read_jobs(tmp_path / "lib", "5%", exclude=tmp_path / "lib" / "out")
    assert [j.name for j in jobs] == ["a", "sub__b"]
    with pytest.raises(ManifestError, match=r"empty: no model files \(\.obj, \.gltf, \.glb\)"):
        (tmp_path / "empty").mkdir()
        read_jobs(tmp_path / "empty", "5%")
    with pytest.raises(ManifestError, match=r"nope: no such manifest file or folder"):
        read_jobs(tmp_path / "nope", "5%")
    with pytest.raises(ManifestError, match=r"a\.obj: a manifest must be \.csv or \.json"):
        read_jobs(tmp_path / "lib" / "a.obj", "5%")


def test_cli_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path, ["a.obj"])
    (tmp_path / "f").write_text("")
    cases = [(["--triangles", "10", "--workers", "0"], r"--workers must be >= 1, got 0"),
             (["--triangles", "10", "--threads", "0"], r"--threads must be >= 1, got 0"),
             (["--triangles", "abc"], r"--triangles: triangles: 'abc' is not a count"),
             (["--triangles", "10", "--ray", "auto", "--retries", "-1"],
              r"--retries must be >= 0, got -1"),
             (["--triangles", "10", "--iter", "-3"], r"'iter'")]
    for extra, message in cases:  # every check comes before a model runs
        rc = main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), "--quiet", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1, (extra, err)
        assert re.search(message, err), (extra, err)
        assert not (tmp_path / "out").exists()
    rc = main(["batch", str(tmp_path), "-o", str(tmp_path / "f"), "--triangles", "10"])
    assert rc == 2 and "f: exists and is not a folder" in capsys.readouterr().err
