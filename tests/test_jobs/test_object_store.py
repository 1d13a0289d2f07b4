"""Datasets on S3-compatible object storage, end to end against a real `moto_server` on 127.0.0.1: data_prep writes
to an s3:// prefix (manifest last, resume without re-uploading), verify and stats read it, the loaders stage and
verify shards and yield exactly what they yield for the same data prepared locally, a damaged object is named, and
a short training run reads its dataset from the bucket; a run with its checkpoints and MLflow artifacts in the bucket
resumes from there, registers its model there, and `predict` loads it and reads and writes s3:// images and mattes
that equal a local predict's."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Iterator

import boto3
import numpy as np
import pytest
import torch

import pipeline
from data_prep import remote_build
from data_prep.cli import main as data_prep_main
from formats import object_store
from formats.manifest import read_manifest
from pipeline.dataset import DatasetError
from tests.test_jobs.conftest import DEMO_CONFIG, TINY, VENV_BIN, free_port, stop_process_group, wait_http

pytestmark = pytest.mark.slow

BUCKET = "matting"
PREP = ["synthetic", "--count", "6", "--size", "96", "--workers", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[boto3.client]:
    """`moto_server` on a free loopback port, the AWS variables pointing at it, a bucket; stopped by its pid."""
    tmp = tmp_path_factory.mktemp("s3")
    port = free_port()
    log = tmp / "moto.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/moto-api/", proc, 60, log)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": "us-east-1", "A2U_MATTING_CACHE": str(tmp / "cache")}.items():
                mp.setenv(k, v)
            mp.delenv("AWS_SESSION_TOKEN", raising=False)
            client = boto3.client("s3", endpoint_url=url)
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def datasets(s3, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same synthetic data prepared to the bucket and to a local folder."""
    local = tmp_path_factory.mktemp("local") / "ds"
    uri = f"s3://{BUCKET}/synthetic/v1"
    assert data_prep_main([*PREP, "--out", uri]) == 0
    assert data_prep_main([*PREP, "--out", str(local)]) == 0
    return {"uri": uri, "local": local}


def _objects(s3, prefix: str) -> dict[str, str]:
    """name -> ETag of the objects under `prefix` (not the empty `prefix/` directory marker pyarrow may leave)."""
    out = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")
    return {o["Key"].rsplit("/", 1)[1]: o["ETag"] for o in out.get("Contents", []) if not o["Key"].endswith("/")}


def test_prepared_shards_are_the_local_ones(s3, datasets) -> None:
    remote, local = read_manifest(datasets["uri"]), read_manifest(datasets["local"])
    assert remote.path == f"{datasets['uri']}/manifest.json"
    assert [(s["name"], s["sha256"]) for s in remote.shards] == [(s["name"], s["sha256"]) for s in local.shards]
    names = set(_objects(s3, "synthetic/v1"))
    assert names == {"manifest.json"} | {s["name"] for s in local.shards} | {
        s["name"].replace(".tar", ".idx") for s in local.shards}  # no journal, no temp objects left


def test_verify_and_stats_read_the_bucket(datasets, capsys) -> None:
    assert data_prep_main(["verify", datasets["uri"], "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip() == f"{datasets['uri']}: OK"
    assert data_prep_main(["stats", datasets["uri"], "--json"]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert data_prep_main(["stats", str(datasets["local"]), "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert remote["dataset"] == datasets["uri"]
    assert {**remote, "dataset": None} == {**local, "dataset": None} and local["kinds"]["fg"]["samples"] == 6


def test_rerun_uploads_nothing_and_interrupted_run_resumes(s3, datasets, monkeypatch, capsys) -> None:
    uploads: list[str] = []
    real_upload = object_store.upload
    monkeypatch.setattr(remote_build.object_store, "upload", lambda p, u: (uploads.append(u), real_upload(p, u)))
    before = _objects(s3, "synthetic/v1")
    assert data_prep_main([*PREP, "--out", datasets["uri"]]) == 0
    assert "up to date" in capsys.readouterr().out and uploads == [] and _objects(s3, "synthetic/v1") == before

    # an interrupted run: the journal lists the first two shards, the rest and the manifest never arrived
    doc = json.loads(object_store.read_bytes(f"{datasets['uri']}/manifest.json"))
    journal = {"format": doc["format"], "options": doc["options"], "shards": doc["shards"][:2]}
    object_store.write_bytes(f"{datasets['uri']}/.data_prep_progress.json", json.dumps(journal).encode())
    for s in ["manifest.json"] + [n for s in doc["shards"][2:] for n in (s["name"], s["name"][:-4] + ".idx")]:
        s3.delete_object(Bucket=BUCKET, Key=f"synthetic/v1/{s}")
    with pytest.raises(DatasetError, match="no manifest.json"):
        pipeline.build_eval_loader(datasets["uri"])
    assert data_prep_main([*PREP, "--out", datasets["uri"]]) == 0
    late = [s["name"] for s in doc["shards"][2:]]
    assert sorted(u.rsplit("/", 1)[1] for u in uploads if u.endswith(".tar")) == sorted(late)
    assert uploads[-1].endswith("/manifest.json")                       # the manifest goes up last
    after = _objects(s3, "synthetic/v1")                                # byte-identical shards, journal removed
    assert after.keys() == before.keys() and {**after, "manifest.json": 0} == {**before, "manifest.json": 0}
    assert read_manifest(datasets["uri"]).shards == doc["shards"]       # a new manifest (new time), same shards


def test_loaders_yield_what_they_yield_locally(datasets, caplog) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.staging")
    args = dict(batch_size=2, crop_size=64, seed=5, iterations_per_epoch=1)
    remote = next(iter(pipeline.build_train_loader(datasets["uri"], **args)))
    local = next(iter(pipeline.build_train_loader(str(datasets["local"]), **args)))
    assert remote.keys() == local.keys()
    for name in remote:
        assert torch.equal(remote[name], local[name]), name
    assert "staged" in caplog.text
    caplog.clear()
    r_eval = list(pipeline.build_eval_loader(datasets["uri"], split="test", as_uint8=True))
    l_eval = list(pipeline.build_eval_loader(str(datasets["local"]), split="test", as_uint8=True))
    assert [s["key"] for s in r_eval] == [s["key"] for s in l_eval] and len(r_eval) == 4
    for r, lo in zip(r_eval, l_eval):
        for name in ("image", "alpha", "trimap"):
            assert (r[name] == lo[name]).all(), name
    assert "0 reused" in caplog.text                                    # test shards: first use
    caplog.clear()
    pipeline.build_eval_loader(datasets["uri"], split="test")
    assert "0 downloaded" in caplog.text                                # second use: from the cache

    cached = next((Path(os.environ["A2U_MATTING_CACHE"]) / "shards" / BUCKET).rglob("test-000000.tar"))
    data = bytearray(cached.read_bytes())
    data[700] ^= 0xFF                                                   # a damaged cache copy, same size
    cached.write_bytes(bytes(data))
    caplog.clear()
    again = list(pipeline.build_eval_loader(datasets["uri"], split="test", as_uint8=True))
    assert "1 downloaded" in caplog.text and all((a["image"] == lo["image"]).all() for a, lo in zip(again, l_eval))


def test_damaged_object_is_named(s3, datasets, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("A2U_MATTING_CACHE", str(tmp_path / "fresh-cache"))
    for name in _objects(s3, "synthetic/v1"):
        s3.copy_object(Bucket=BUCKET, Key=f"damaged/{name}", CopySource={"Bucket": BUCKET, "Key": f"synthetic/v1/{name}"})
    body = bytearray(s3.get_object(Bucket=BUCKET, Key="damaged/test-000000.tar")["Body"].read())
    body[700] ^= 0xFF                                                   # inside the first member's data
    s3.put_object(Bucket=BUCKET, Key="damaged/test-000000.tar", Body=bytes(body))
    uri = f"s3://{BUCKET}/damaged"
    with pytest.raises(DatasetError, match=f"{uri}/test-000000.tar: does not match manifest.json"):
        pipeline.build_eval_loader(uri)
    assert not (tmp_path / "fresh-cache" / "shards" / BUCKET / "damaged" / "test-000000.tar").exists()
    assert data_prep_main(["verify", uri, "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert f"{uri}/test-000000.tar: " in out and "sha256" in out


def test_prep_refuses_a_foreign_prefix_and_other_options(s3, datasets, capsys) -> None:
    s3.put_object(Bucket=BUCKET, Key="foreign/notes.txt", Body=b"not a dataset")
    assert data_prep_main([*PREP, "--out", f"s3://{BUCKET}/foreign"]) == 2
    assert f"s3://{BUCKET}/foreign is not empty" in capsys.readouterr().err
    assert data_prep_main([*PREP[:-1], "4", "--out", datasets["uri"]]) == 2
    err = capsys.readouterr().err
    assert datasets["uri"] in err and "seed" in err and "a2u-staging" not in err
    assert _objects(s3, "foreign") == {"notes.txt": _objects(s3, "foreign")["notes.txt"]}


def test_training_reads_the_bucket(datasets, tmp_path) -> None:
    from jobs.config import load_config
    from jobs.trainer import run_training

    outcome = run_training(load_config(DEMO_CONFIG, [
        *TINY, "data.iterations_per_epoch=2", f"data.dataset_dir={datasets['uri']}",
        f"run.storage_path={tmp_path / 'ray'}", "run.name=from-s3",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "tracking.log_model=false"]))
    assert outcome.step == 2


def test_bad_input_is_named_and_no_manifest_is_uploaded(s3, tmp_path, capsys) -> None:
    from tests.test_data_prep.conftest import make_raw

    raw = make_raw(tmp_path / "raw")
    bad = raw["alpha"] / "obj03.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    uri = f"s3://{BUCKET}/folders"
    args = ["folders", "--fg", str(raw["fg"]), "--alpha", str(raw["alpha"]), "--bg", str(raw["bg"]), "--workers", "1",
            "--out", uri]
    assert data_prep_main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "corrupt or truncated" in err, err
    assert "manifest.json" not in _objects(s3, "folders")
    assert data_prep_main([*args, "--skip-bad"]) == 0
    assert [s["path"] for s in read_manifest(uri).skipped] == [str(bad)]


def test_missing_bucket_is_named(s3, capsys) -> None:
    assert data_prep_main([*PREP, "--out", "s3://no-such-bucket/ds"]) == 2
    err = capsys.readouterr().err
    assert "s3://no-such-bucket/ds: bucket 'no-such-bucket' does not exist" in err and "a2u-staging" not in err
    with pytest.raises(DatasetError, match="s3://no-such-bucket/ds: its bucket does not exist"):
        pipeline.build_eval_loader("s3://no-such-bucket/ds")


# ---------------------------------------------------------------- training, registry and predict on s3
RUN_PREFIX, MLFLOW_PREFIX, MODEL = "ray", "mlflow", "a2u-s3"


def _photos(root: Path, count: int = 3) -> tuple[Path, Path]:
    """`count` small RGB photos and their 0/128/255 trimaps (same names), written under `root`."""
    from PIL import Image

    rng = np.random.default_rng(11)
    photos, trimaps = root / "photos", root / "trimaps"
    photos.mkdir(parents=True)
    trimaps.mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
        tri = np.zeros((40, 48), np.uint8)
        tri[8:32, 10:38] = 128
        tri[14:26, 16 + i:30] = 255
        Image.fromarray(tri).save(trimaps / f"p{i}.png")
    return photos, trimaps


def _put_folder(s3, folder: Path, prefix: str) -> str:
    for f in sorted(folder.iterdir()):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{f.name}", Body=f.read_bytes())
    return f"s3://{BUCKET}/{prefix}"


def _keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def trained_on_s3(s3, datasets, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """2 steps with checkpoints and the experiment's artifacts in the bucket, the model registered; then the same
    run name with a second epoch: it must continue from the checkpoint in the bucket (steps 3-4)."""
    from jobs.config import load_config
    from jobs.trainer import run_training

    root = tmp_path_factory.mktemp("s3-train")
    db = f"sqlite:///{root / 'mlflow.db'}"
    base = [*TINY, "data.iterations_per_epoch=2", f"data.dataset_dir={datasets['uri']}",
            f"run.storage_path=s3://{BUCKET}/{RUN_PREFIX}/", "run.name=s3-run", f"tracking.tracking_uri={db}",
            "tracking.experiment=s3-exp", f"tracking.artifact_location=s3://{BUCKET}/{MLFLOW_PREFIX}",
            "tracking.log_model=true", f"tracking.registered_model_name={MODEL}"]
    first = run_training(load_config(DEMO_CONFIG, base))
    first_keys = _keys(s3, f"{RUN_PREFIX}/s3-run")
    second = run_training(load_config(DEMO_CONFIG, [*base, "optim.epochs=2"]))
    return {"root": root, "db": db, "first": first, "first_keys": first_keys, "second": second}


def test_checkpoints_models_and_resume_live_in_the_bucket(s3, trained_on_s3) -> None:
    first, second = trained_on_s3["first"], trained_on_s3["second"]
    assert first.step == 2 and second.step == 4                         # the second run continued, not restarted
    assert second.mlflow_run_id == first.mlflow_run_id and [first.model_version, second.model_version] == [1, 2]
    assert first.run_dir == f"s3://{BUCKET}/{RUN_PREFIX}/s3-run"
    assert first.checkpoint_path == f"s3://{BUCKET}/{RUN_PREFIX}/s3-run/checkpoint_step00000002"
    assert f"{RUN_PREFIX}/s3-run/checkpoint_step00000002/state.pt" in trained_on_s3["first_keys"]
    assert f"{RUN_PREFIX}/s3-run/checkpoint_step00000004/state.pt" in _keys(s3, f"{RUN_PREFIX}/s3-run")
    models = [k for k in _keys(s3, MLFLOW_PREFIX) if k.endswith("/MLmodel")]
    assert len(models) == 2, models                                     # both registered versions' files
    assert not (trained_on_s3["root"] / "mlruns").exists()              # nothing went next to the database


def test_predict_reads_and_writes_the_bucket(s3, trained_on_s3, tmp_path, capsys) -> None:
    from PIL import Image

    from jobs.cli import main as jobs_main

    photos, trimaps = _photos(tmp_path / "in")
    image_uri, trimap_uri = _put_folder(s3, photos, "photos"), _put_folder(s3, trimaps, "trimaps")
    common = ["--model", f"models:/{MODEL}/2", "--tracking-uri", trained_on_s3["db"], "--device", "cpu"]
    out = f"s3://{BUCKET}/mattes"
    assert jobs_main(["predict", *common, "--image", image_uri, "--trimap", trimap_uri, "--out", out]) == 0
    assert f"wrote 3 alpha matte(s): {out}" in capsys.readouterr().out
    assert jobs_main(["predict", *common, "--image", str(photos), "--trimap", str(trimaps),
                      "--out", str(tmp_path / "local")]) == 0
    assert _keys(s3, "mattes") == [f"mattes/p{i}.png" for i in range(3)]
    for i in range(3):
        body = s3.get_object(Bucket=BUCKET, Key=f"mattes/p{i}.png")["Body"].read()
        remote = np.asarray(Image.open(io.BytesIO(body)))
        local = np.asarray(Image.open(tmp_path / "local" / f"p{i}.png"))
        assert remote.dtype == np.uint8 and remote.shape == (40, 48) and np.array_equal(remote, local), i

    # one file; an existing matte is kept without --overwrite; a missing input is named
    one = f"s3://{BUCKET}/single/one"
    single = ["predict", *common, "--image", f"{image_uri}/p1.png", "--trimap", f"{trimap_uri}/p1.png", "--out", one]
    assert jobs_main(single) == 0
    assert s3.get_object(Bucket=BUCKET, Key="single/one.png")["Body"].read() == \
        s3.get_object(Bucket=BUCKET, Key="mattes/p1.png")["Body"].read()
    before = _objects(s3, "mattes")
    assert jobs_main(["predict", *common, "--image", image_uri, "--trimap", trimap_uri, "--out", out]) == 2
    assert f"{out}/p0.png exists (and 2 more): pass --overwrite" in capsys.readouterr().err
    assert _objects(s3, "mattes") == before
    assert jobs_main(["predict", *common, "--image", f"s3://{BUCKET}/nothing-here", "--trimap", trimap_uri,
                      "--out", out, "--overwrite"]) == 2
    assert f"--image s3://{BUCKET}/nothing-here: no such object" in capsys.readouterr().err


def test_s3_run_storage_and_predict_targets_are_checked_first(s3, tmp_path, capsys) -> None:
    from jobs.cli import main as jobs_main
    from jobs.config import load_config
    from jobs.errors import JobError
    from jobs.trainer import run_training

    photos, trimaps = _photos(tmp_path / "in", count=2)
    image_uri, trimap_uri = _put_folder(s3, photos, "chk/photos"), _put_folder(s3, trimaps, "chk/trimaps")
    before = _objects(s3, "chk/trimaps")
    # the targets are refused before the model is even looked for
    common = ["predict", "--model", str(tmp_path / "no-model"), "--image", image_uri, "--trimap", trimap_uri]
    assert jobs_main([*common, "--out", trimap_uri, "--overwrite"]) == 2
    assert f"over the input object {trimap_uri}/p0.png" in capsys.readouterr().err
    assert jobs_main([*common, "--out", "s3://no-such-bucket/mattes"]) == 2
    assert "s3://no-such-bucket/mattes: bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    assert jobs_main([*common, "--out", f"s3://{BUCKET}/chk/mattes", "--ray", "auto"]) == 2
    assert "--ray reads and writes local folders only" in capsys.readouterr().err
    assert _objects(s3, "chk/trimaps") == before and _keys(s3, "chk/mattes") == []

    local = tmp_path / "ds"
    assert data_prep_main([*PREP, "--out", str(local)]) == 0
    with pytest.raises(JobError, match="run.storage_path=s3://no-such-bucket/runs: bucket 'no-such-bucket' does not"):
        run_training(load_config(DEMO_CONFIG, [*TINY, f"data.dataset_dir={local}",
                                               "run.storage_path=s3://no-such-bucket/runs",
                                               f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]))
    assert not (tmp_path / "mlflow.db").exists()                        # refused before any MLflow run


def test_a_bad_trimap_object_is_named_by_its_uri(s3, trained_on_s3, tmp_path, capsys) -> None:
    from jobs.cli import main as jobs_main

    photos, trimaps = _photos(tmp_path / "in", count=2)
    (trimaps / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    image_uri, trimap_uri = _put_folder(s3, photos, "bad/photos"), _put_folder(s3, trimaps, "bad/trimaps")
    assert jobs_main(["predict", "--model", f"models:/{MODEL}/1", "--tracking-uri", trained_on_s3["db"],
                      "--image", image_uri, "--trimap", trimap_uri, "--out", f"s3://{BUCKET}/bad/mattes"]) == 2
    err = capsys.readouterr().err
    assert f"{trimap_uri}/p1.png" in err and "a2u-predict-" not in err, err
    assert _keys(s3, "bad/mattes") == []                                # no matte stored for a failed command
