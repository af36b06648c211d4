"""Static checks of the Slicer module files, without Slicer or Qt: the .ui matches the widget
code, the module files import only what Slicer provides, the CMake lists name every file that
must ship, and the module scripts compile and define the classes Slicer looks for."""
import ast
import py_compile
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "COVIDSeg"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "COVIDSeg.ui"
MODULE_FILE = MODULE_DIR / "COVIDSeg.py"
EFFECT_MODULE_FILE = MODULE_DIR / "SegmentEditorCOVIDSegAI.py"
EFFECT_LIB = MODULE_DIR / "SegmentEditorCOVIDSegAILib"
GUI_LIB = MODULE_DIR / "COVIDSegGUI"

# What a Slicer installation provides to Python, plus our own packages that ship in the module.
SLICER_PROVIDED = {"slicer", "qt", "ctk", "vtk", "numpy", "SimpleITK", "sitkUtils", "packaging",
                   "SegmentEditorEffects", "qSlicerSegmentationsEditorEffectsPythonQt",
                   "SampleData", "SegmentStatistics", "PyTorchUtils"}
OWN_PACKAGES = {"COVIDSeg", "COVIDSegLib", "COVIDSegSlicer", "COVIDSegGUI", "SegmentEditorCOVIDSegAILib"}
# Module files are imported when Slicer starts, before the requirements (torch...) may exist:
# at their top level they import nothing of ours but the path helper.
TOP_LEVEL_OWN_ALLOWED = {"COVIDSegGUI.paths", "SegmentEditorEffects"}


def module_files():
    """The Python files Slicer loads from the module folder (not the MRML logic package,
    which part of the tests import under slicer-core)."""
    files = [MODULE_FILE, EFFECT_MODULE_FILE, *sorted(EFFECT_LIB.glob("*.py")), *sorted(GUI_LIB.glob("*.py"))]
    assert all(f.is_file() for f in files)
    return files


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST, top_level_only=False):
    """(dotted name, line) of absolute imports; relative imports are package-internal."""
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, node.lineno


# ---------------------------------------------------------------------------- (1) UI
def ui_widgets(path: Path):
    """objectName -> (class, {dynamic property: value}) of every widget in a .ui file."""
    root = ET.parse(path).getroot()
    assert root.tag == "ui"
    widgets = {}
    for w in root.iter("widget"):
        props = {p.get("name"): "".join(p.itertext()).strip() for p in w.findall("property")}
        widgets[w.get("name")] = (w.get("class"), props)
    return widgets


def accessed_ui_names(path: Path):
    """Names used as ``self.ui.NAME`` in a Python file."""
    names = set()
    for node in ast.walk(parse(path)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "ui"
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def parameter_fields(path: Path, class_name="COVIDSegParameterNode"):
    for node in parse(path).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    raise AssertionError(f"{class_name} not found in {path.name}")


def test_ui_files_are_valid_xml():
    for ui in MODULE_DIR.rglob("*.ui"):
        ui_widgets(ui)  # raises on invalid XML


def test_every_widget_the_code_uses_is_in_the_ui():
    widgets = ui_widgets(UI_FILE)
    used = accessed_ui_names(MODULE_FILE)
    assert {"applyButton", "cancelButton", "progressBar", "statusLabel"} <= used  # the parser finds them
    missing = sorted(used - set(widgets))
    assert not missing, f"COVIDSeg.py uses widgets missing from {UI_FILE.name}: {missing}"


def test_ui_parameter_names_are_parameter_node_fields():
    fields = parameter_fields(MODULE_FILE)
    bound = {props["SlicerParameterName"]: name for name, (_, props) in ui_widgets(UI_FILE).items()
             if "SlicerParameterName" in props}
    assert bound, "no widget is bound to the parameter node"
    unknown = sorted(set(bound) - fields)
    assert not unknown, f"SlicerParameterName not in COVIDSegParameterNode: {unknown}"


def test_ui_scene_is_passed_to_every_mrml_widget():
    root = ET.parse(UI_FILE).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"}
    mrml = {name for name, (cls, _) in ui_widgets(UI_FILE).items() if cls.startswith("qMRML") and cls != "qMRMLWidget"}
    assert mrml and mrml <= receivers, f"MRML widgets without the scene: {sorted(mrml - receivers)}"


# ---------------------------------------------------------------------------- (2) imports
def test_module_files_import_only_what_slicer_provides():
    allowed = SLICER_PROVIDED | OWN_PACKAGES | set(sys.stdlib_module_names)
    bad = [(f.name, name, line) for f in module_files() for name, line in imported_modules(parse(f))
           if name.split(".")[0] not in allowed]
    assert not bad, f"imports Slicer does not provide: {bad}"


def test_module_files_load_before_requirements_exist():
    bad = []
    for f in [MODULE_FILE, EFFECT_MODULE_FILE, *EFFECT_LIB.glob("*.py")]:
        for name, line in imported_modules(parse(f), top_level_only=True):
            if name.split(".")[0] in OWN_PACKAGES | {"torch"} and name not in TOP_LEVEL_OWN_ALLOWED:
                bad.append((f.name, name, line))
    assert not bad, f"top-level imports that need COVIDSegLib's requirements: {bad}"


# ---------------------------------------------------------------------------- (3) CMake
def cmake_sets(path: Path):
    """{variable: [values]} of every ``set(...)`` in a CMakeLists, ``${MODULE_NAME}``-style
    variables expanded when they have a single value."""
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    sets = {}
    for name, body in re.findall(r"\bset\(\s*(\w+)\s+([^)]*)\)", text):
        sets[name] = re.findall(r'"[^"]*"|[^\s"]+', body)
    scalars = {k: v[0] for k, v in sets.items() if len(v) == 1}
    expand = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: scalars.get(m.group(1), m.group(0)), s)  # noqa: E731
    return {k: [expand(v).strip('"') for v in vals] for k, vals in sets.items()}, text


def files_under(folder: Path, pattern="*"):
    return {p for p in folder.rglob(pattern) if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def module_cmake():
    return cmake_sets(MODULE_DIR / "CMakeLists.txt")


def listed(sets, *names, base: Path):
    return {(base / v).resolve() for n in names for v in sets[n] if not v.startswith("${")}


def test_cmake_lists_every_library_file(module_cmake):
    sets, _ = module_cmake
    listed_files = listed(sets, "COVIDSEGLIB_SCRIPTS", base=ROOT)
    missing = sorted(str(p.relative_to(ROOT)) for p in files_under(ROOT / "COVIDSegLib", "*.py") - listed_files)
    assert not missing, f"COVIDSegLib files missing from COVIDSEGLIB_SCRIPTS: {missing}"


def test_cmake_lists_every_module_file(module_cmake):
    sets, _ = module_cmake
    scripts = listed(sets, "MODULE_PYTHON_SCRIPTS", "EFFECT_MODULE_PYTHON_SCRIPTS", base=MODULE_DIR)
    missing = sorted(str(p.relative_to(ROOT)) for p in files_under(MODULE_DIR, "*.py") - scripts)
    assert not missing, f"module .py files missing from the CMake lists: {missing}"
    resources = listed(sets, "MODULE_PYTHON_RESOURCES", "EFFECT_MODULE_PYTHON_RESOURCES", base=MODULE_DIR)
    shipped = files_under(MODULE_DIR / "Resources") | {p for p in files_under(EFFECT_LIB) if p.suffix != ".py"}
    missing = sorted(str(p.relative_to(ROOT)) for p in shipped - resources)
    assert not missing, f"module resources missing from the CMake lists: {missing}"


def test_cmake_lists_every_shared_resource(module_cmake):
    sets, _ = module_cmake
    shared = listed(sets, "COVIDSEG_SHARED_RESOURCES", base=ROOT)
    expected = files_under(ROOT / "Resources" / "Models") | files_under(ROOT / "Resources" / "Terminology", "*.term.json")
    assert any(p.suffix == ".safetensors" for p in expected)
    missing = sorted(str(p.relative_to(ROOT)) for p in expected - shared)
    assert not missing, f"shared resources missing from COVIDSEG_SHARED_RESOURCES: {missing}"


def test_cmake_lists_name_only_existing_files(module_cmake):
    sets, _ = module_cmake
    everything = (listed(sets, "COVIDSEGLIB_SCRIPTS", "COVIDSEG_SHARED_RESOURCES", base=ROOT)
                  | listed(sets, "MODULE_PYTHON_SCRIPTS", "EFFECT_MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES",
                           "EFFECT_MODULE_PYTHON_RESOURCES", base=MODULE_DIR))
    stale = sorted(str(p) for p in everything if not p.is_file())
    assert not stale, f"CMake lists name files that do not exist: {stale}"


def test_module_cmake_builds_both_modules_with_tests(module_cmake):
    sets, text = module_cmake
    calls = re.findall(r"slicerMacroBuildScriptedModule\(([^)]*)\)", text)
    assert len(calls) == 2 and all("WITH_GENERIC_TESTS" in c for c in calls)
    assert {re.search(r"NAME\s+\$\{(\w+)\}", c).group(1) for c in calls} == {"MODULE_NAME", "EFFECT_MODULE_NAME"}
    assert sets["MODULE_NAME"] == ["COVIDSeg"] and sets["EFFECT_MODULE_NAME"] == ["SegmentEditorCOVIDSegAI"]
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", text)
    assert "${COVIDSEGLIB_STAGED}" in " ".join(sets["MODULE_PYTHON_SCRIPTS"])


def test_top_level_cmake_has_extension_metadata():
    sets, text = cmake_sets(ROOT / "CMakeLists.txt")
    for field in ("NAME", "HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert "".join(sets.get(f"EXTENSION_{field}", [])).strip(), f"EXTENSION_{field} is not set"
    assert sets["EXTENSION_NAME"] == ["COVIDSeg"] and sets["EXTENSION_CATEGORY"] == ["Segmentation"]
    assert "PyTorch" in sets["EXTENSION_DEPENDS"][0].split()
    assert re.search(r"^add_subdirectory\(COVIDSeg\)", text, re.M)
    # icon and screenshots point at files of this repository
    for url in [*sets["EXTENSION_ICONURL"][0].split(), *sets["EXTENSION_SCREENSHOTURLS"][0].split()]:
        path = url.split("/main/", 1)[1]
        assert (ROOT / path).is_file(), f"{url} names {path}, which is not in the repository"


# ---------------------------------------------------------------------------- (4) classes
def class_bases(path: Path):
    return {n.name: [ast.unparse(b) for b in n.bases] for n in parse(path).body if isinstance(n, ast.ClassDef)}


@pytest.mark.parametrize("path", [MODULE_FILE, EFFECT_MODULE_FILE, *sorted(EFFECT_LIB.glob("*.py")),
                                  *sorted(GUI_LIB.glob("*.py"))], ids=lambda p: p.name)
def test_module_scripts_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_module_defines_the_four_classes():
    classes = class_bases(MODULE_FILE)
    expected = {"COVIDSeg": "ScriptedLoadableModule", "COVIDSegWidget": "ScriptedLoadableModuleWidget",
                "COVIDSegLogic": "ScriptedLoadableModuleLogic", "COVIDSegTest": "ScriptedLoadableModuleTest"}
    for name, base in expected.items():
        assert name in classes, f"COVIDSeg.py does not define {name}"
        assert base in classes[name], f"{name} does not derive from {base}"


def test_effect_module_and_effect_classes():
    assert "ScriptedLoadableModule" in class_bases(EFFECT_MODULE_FILE)["SegmentEditorCOVIDSegAI"]
    effect = class_bases(EFFECT_LIB / "SegmentEditorEffect.py")
    assert "AbstractScriptedSegmentEditorEffect" in effect["SegmentEditorEffect"]
    source = (EFFECT_LIB / "SegmentEditorEffect.py").read_text(encoding="utf-8")
    for call in ("defaultModifierLabelmap", "modifySelectedSegmentByLabelmap", "saveStateForUndo"):
        assert call in source, f"the effect does not use {call}"
