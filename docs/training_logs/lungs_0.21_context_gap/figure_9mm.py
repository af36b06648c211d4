import sys, numpy as np, SimpleITK as sitk
sys.path.insert(0, "scripts")
from lung_variants import variants, DATA
import COVIDSegLib.lungs.lung_model as lm
from COVIDSegLib.lungs.lung_model import LungModel
from COVIDSegLib.lungs.segment import segment_lungs
from COVIDSegLib.volume import Volume
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt
ct = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.nii.gz")); ref = sitk.ReadImage(str(DATA / "totalseg_example_ct_sm.lungs.nii.gz"))
img, r = variants(ct, ref)["9 mm slices"]
v = Volume(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
m = LungModel.load("Resources/Models/covidseg_lungs.json")
new = segment_lungs(v, model=m).array
orig = lm.neighbour_slices
lm.neighbour_slices = lambda n, c, s: orig(n, c, s, max_gap_mm=1e9)
old = segment_lungs(v, model=m).array
lm.neighbour_slices = orig
t = sitk.GetArrayFromImage(r); hu = v.array
zs = [z for z in range(len(t)) if t[z].any()]
print(img.GetSize(), zs)
fig, ax = plt.subplots(2, len(zs), figsize=(4 * len(zs), 8))
for j, z in enumerate(zs):
    for i, (lab, name) in enumerate(((old, "0.20.0: context across 9 mm"), (new, "0.21.0: no context over 5 mm"))):
        a = ax[i, j]; r180 = lambda x: x[::-1, ::-1]; a.imshow(r180(hu[z]), cmap="gray", vmin=-1000, vmax=300)
        a.contour(r180(t[z] > 0), levels=[0.5], colors="lime", linewidths=1)
        a.contour(r180(lab[z] == 1), levels=[0.5], colors="red", linewidths=1); a.contour(r180(lab[z] == 2), levels=[0.5], colors="yellow", linewidths=1)
        a.set_title(f"{name}\nslice {z}", fontsize=9); a.axis("off")
fig.suptitle("totalseg_example_ct_sm resampled to 9 mm (radiological view): reference (green), left lung (red), right lung (yellow)")
plt.tight_layout(); plt.savefig("docs/figures/lungs_totalseg_example_ct_sm_9mm_0.21.png", dpi=70)
