"""data_prep: raw matting data -> verified WebDataset shards (+ one DALI .idx per tar), offline, resumable.

Commands (`python -m data_prep <command> --help`):
  folders --fg DIR --alpha DIR --bg DIR --out DIR   fg/alpha matched by file stem, any backgrounds
  composition1k --root DIR --bg DIR --out DIR       Adobe Composition-1k layout (+ e.g. COCO backgrounds)
  synthetic --out DIR --count N [--size PX]         built-in deterministic procedural data (demos, tests)
  verify DIR                                        sizes/sha256 vs manifest, decode all, sizes, .idx; exit 0 = OK
  stats DIR [--preview PNG]                         samples per kind, sizes, unknown fraction, contact sheet
  trimap (--alpha | --mask) PATH --out PATH          0/128/255 trimap PNGs for users (data_prep/trimaps.py)
Writer options (all builders): --seed, --shard-size (default 256MB, 1024-based), --workers (default CPU count),
--val-count N, --test-composites K, --train-composites K, --skip-bad, --overwrite, --encoding png|raw,
--ray [ADDRESS] (encode on a Ray cluster, ray_executor.py: the same bytes as the local pool; inputs at the same
paths on every node, shards and manifest written by this process).

Layout (data contract with pipeline/ and jobs/): manifest.json + `<kind>-NNNNNN.tar` + `<kind>-NNNNNN.idx`, kinds
fg (fg.png|fg.jpg, alpha.png, meta.json), bg (bg.jpg), val/test (image.png, trimap.png, alpha.png, meta.json),
train (image.png, alpha.png, trimap.png, fg.png, bg.jpg). Keys never contain dots. With `--encoding raw` every image
member is `<name>.npy` instead (uint8 H x W x C, the pixels the png member decodes to; formats/encoding.py), and the
manifest's "encoding" says which (absent in older manifests: png). The manifest is read by formats.manifest.

Splits. folders/composition1k: `--val-count N` foregrounds (seeded choice) leave the fg shards and become val
composites on `--val-composites` (2) backgrounds each; folders `--test-count N` does the same for the test set
(with `--test-composites K` and no `--test-count`, the training foregrounds are composited);
composition1k's test set is its released Test_set. synthetic: `--count N` training foregrounds; val and test
foregrounds are EXTRA held-out indices (max(2, N//6) x 2 and max(2, N//4) x --test-composites, default 2), each
composite on its own held-out background; max(8, N) backgrounds in bg shards.

Trimaps (test/val/train): from the true alpha, unknown = everything not (alpha==255 or alpha==0) after eroding
both known regions with an elliptical kernel of radius max(3, round(1.5 % of the long side)).

Resume: tars are written as `.<name>.partial`, indexed, then renamed; a hidden journal lists finished shards with
their sha256 and a digest of the plan entries (input paths, sizes, mtimes, seeds) they hold. A re-run with the
same options keeps every leading shard whose file, checksum and plan digest still match and rewrites only from
the first mismatch; manifest.json is written last, atomically. Different options -> error unless --overwrite.

Python API: `cli.main(argv)`, `verify.verify_dataset(dir)`, `stats.compute_stats(dir)`,
`stats.write_preview(dir, png)`, `reader.iter_samples(tar)`, `synthetic.make_foreground/make_background`,
`compositing.trimap_from_alpha/composite/fit_background`, `trimaps.trimap_from_alpha/trimap_from_mask` (also used
by `jobs predict --mask`). Imports neither model/ nor pipeline/.
"""
