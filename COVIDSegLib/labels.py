"""The fixed label values of every label map the project writes (DESIGN.md)."""

BACKGROUND = 0
LEFT_LUNG = 1
RIGHT_LUNG = 2
GGO = 3  # or "infection" with a binary model
CONSOLIDATION = 4

NAMES = {
    LEFT_LUNG: "Left lung",
    RIGHT_LUNG: "Right lung",
    GGO: "Ground-glass opacity",
    CONSOLIDATION: "Consolidation",
}

# RGB in 0..1; lungs blue/green, GGO yellow, consolidation red.
COLORS = {
    LEFT_LUNG: (0.50, 0.68, 0.95),
    RIGHT_LUNG: (0.47, 0.85, 0.55),
    GGO: (1.00, 0.85, 0.20),
    CONSOLIDATION: (0.90, 0.20, 0.15),
}


def names_for(task: str) -> dict:
    """Segment names of a label map made by a model of ``task``: a binary model's 3 is "Infection"."""
    return {**NAMES, GGO: "Infection"} if task == "binary" else dict(NAMES)
