"""Write and show: per-input reports, overlays, the cohort page and whole output sets."""
