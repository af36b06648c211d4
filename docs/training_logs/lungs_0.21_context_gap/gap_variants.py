"""Fold pairs with and without the 5 mm context-gap bound on the slab variants, plus the 9 mm abdomen cut."""
import sys, json
import numpy as np, SimpleITK as sitk
sys.path.insert(0, "scripts")
from lung_variants import variants, score, resampled, DATA
import COVIDSegLib.lungs.lung_model as lm
from COVIDSegLib.lungs.lung_model import LungModel
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.volume import Volume
orig = lm.neighbour_slices
def bounded(n, context_mm, slice_mm):
    near = orig(n, context_mm, slice_mm)
    if near is not None and slice_mm > 5.0:
        z = np.arange(n); return np.stack([z, z, z], 1)
    return near
ct = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.nii.gz")); ref = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.lungs.nii.gz"))
vs = variants(ct, ref)
pairs = {f"pair_fold{k}": LungModel.load(f"/tmp/pairs/pair_fold{k}.json") for k in range(5)}
out = {}
for mode, fn in (("bounded", bounded), ("plain", orig)):
    lm.neighbour_slices = fn
    for name in ("6 mm slices", "9 mm slices"):
        row = {m: score(model, *vs[name]) for m, model in pairs.items()}
        out[f"{mode} {name}"] = row
        d = [r["dice"] for r in row.values()]
        print(mode, name, f"mean {np.mean(d):.3f} ({min(d):.3f}-{max(d):.3f}) left {np.mean([r['left'] for r in row.values()]):.3f}", flush=True)
    thick = resampled(ct, 9.0, sitk.sitkLinear)[:, :, :6]
    v = Volume(sitk.GetArrayFromImage(thick), thick.GetSpacing(), thick.GetOrigin(), thick.GetDirection())
    lab = segment_lungs(v, model=pairs["pair_fold0"]).array
    out[f"{mode} fold0 9 mm abdomen 0:6"] = ml = round(float((lab > 0).sum() * np.prod(thick.GetSpacing()) / 1000), 2)
    print(mode, "fold0 9 mm abdomen 0:6 mL", ml, flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
