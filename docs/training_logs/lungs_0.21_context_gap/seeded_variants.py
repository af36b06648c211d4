"""Fold pairs (and the final pair) with the 'seeded mean' on the slab variants (as lung_variants.py)."""
import sys, json
import numpy as np, SimpleITK as sitk
sys.path.insert(0, "scripts")
from lung_variants import variants, score, DATA
from COVIDSegLib.lungs.lung_model import LungModel

class Seeded:
    """mean >= 0.5, or either >= 0.5 where aerated (< -400 HU): encoded as 128 in the uint8 map."""
    def __init__(self, a, b): self.a, self.b = a, b
    def probabilities(self, lps, is_hu, *args, **kw):
        pa, pb = self.a.probabilities(lps, is_hu, *args, **kw), self.b.probabilities(lps, is_hu, *args, **kw)
        mean = np.rint((pa.astype(np.uint16) + pb) / 2).astype(np.uint8)
        extra = (np.maximum(pa, pb) >= 128) & (np.asarray(lps) < -400) & (mean < 128)
        mean[extra] = 128
        return mean

if __name__ == "__main__":
    ct = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.nii.gz")); ref = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.lungs.nii.gz"))
    pairs = {f"seeded_fold{k}": Seeded(LungModel.load(f"/tmp/folds192/lungs192_fold{k}.json"), LungModel.load(f"/tmp/folds256/lungs256_fold{k}.json")) for k in range(5)}
    pairs["seeded_final"] = Seeded(LungModel.load("/tmp/final192/covidseg_lungs.json"), LungModel.load("Resources/Models/covidseg_lungs_256.json"))
    out = {name: {m: score(model, *pair) for m, model in pairs.items()} for name, pair in variants(ct, ref).items()}
    for name, row in out.items():
        folds = [r for m, r in row.items() if "fold" in m]
        print(f"{name:28s} folds mean {np.mean([r['dice'] for r in folds]):.3f} ({min(r['dice'] for r in folds):.3f}-{max(r['dice'] for r in folds):.3f}) left {np.mean([r['left'] for r in folds]):.3f}; final {row['seeded_final']}", flush=True)
    json.dump(out, open(sys.argv[1], "w"), indent=1)
