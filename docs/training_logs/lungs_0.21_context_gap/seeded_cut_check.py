"""Held-out abdomen check of the seeded mean: fold-0 pair on the slab cuts, fold-3 pair on the DICOM cuts."""
import sys, json
import numpy as np, SimpleITK as sitk
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/work/main/runs")
from seeded_variants import Seeded
from COVIDSegLib.lungs.lung_model import LungModel
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.volume import Volume
D = "../shared/data/hu-volumes/"
ct = sitk.ReadImage(D + "totalseg_example_ct_sm.nii.gz")
r = sitk.ImageSeriesReader(); r.SetFileNames(r.GetGDCMSeriesFileNames(D + "totalseg_dicom_series")); dcm = r.Execute()
def run(model, img):
    v = Volume(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    lab = segment_lungs(v, model=model).array
    zs = np.flatnonzero(lab.any(axis=(1, 2)))
    return {"ml": round(float((lab > 0).sum() * np.prod(img.GetSpacing()) / 1000), 2), "slices": zs.tolist()}
pair = lambda k: Seeded(LungModel.load(f"/tmp/folds192/lungs192_fold{k}.json"), LungModel.load(f"/tmp/folds256/lungs256_fold{k}.json"))
final = Seeded(LungModel.load("/tmp/final192/covidseg_lungs.json"), LungModel.load("Resources/Models/covidseg_lungs_256.json"))
out = {}
cases = [("seeded_fold0", pair(0), {f"slab 0:{k}": ct[:, :, :k] for k in range(10, 23)}),
         ("seeded_final", final, {f"slab 0:{k}": ct[:, :, :k] for k in range(10, 23)}),
         ("seeded_fold3", pair(3), {**{f"dicom 0:{k}": dcm[:, :, :k] for k in (12, 14, 16)}, "dicom": dcm, "dicom flipped z": sitk.Flip(dcm, [False, False, True])}),
         ("seeded_final", final, {"dicom": dcm})]
for name, model, imgs in cases:
    for case, img in imgs.items():
        out[f"{name} {case}"] = res = run(model, img)
        print(name, case, res, flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
