"""Checks of the addon that need no Odoo: they run everywhere, first.

Only what no lint step of bin/test checks is here. ruff, pylint-odoo (the
OCA mandatory checks of .pylintrc) and the OCA hooks (bin/lint oca) already
check: the manifest's keys, license, author, version format and deprecated
keys (pylint-odoo ``manifest-*``, ``license-allowed``), that its data and
demo files exist (``resource-not-exist``), that every data file is listed
(``file-not-used``), the XML files' syntax (``xml-syntax-error``), the CSV
files' syntax and duplicate ids (``csv-syntax-error``,
``csv-duplicate-record-id``) and the PO files' syntax (``po-syntax-error``).
"""

import ast
import csv
import importlib.util
import re
from pathlib import Path

import polib
import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "subscription_close"
MANIFEST = ast.literal_eval((ADDON / "__manifest__.py").read_text())
XML_FILES = sorted(p for p in ADDON.rglob("*.xml") if "static/lib" not in str(p))


def _model_classes():
    """``(path, class node, model name, new)`` for each model class of the
    addon's Python code (tests aside): ``new`` when the class defines a
    model (``_name`` not among its ``_inherit``), not when it extends one."""
    for path in sorted(ADDON.rglob("*.py")):
        if "tests" in path.relative_to(ADDON).parts:
            continue
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ClassDef):
                continue
            attrs = {
                stmt.targets[0].id: ast.literal_eval(stmt.value)
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id in ("_name", "_inherit")
            }
            inherit = attrs.get("_inherit", ())
            inherit = [inherit] if isinstance(inherit, str) else list(inherit)
            name = attrs.get("_name") or (inherit[0] if inherit else None)
            if name:
                yield path, node, name, "_name" in attrs and name not in inherit


def _defined_models():
    """Models the addon defines (not those it extends), abstract ones aside."""
    return {
        name
        for _path, node, name, new in _model_classes()
        if new and not any(getattr(base, "attr", None) == "AbstractModel" for base in node.bases)
    }


def test_no_file_overrides_another_file_of_the_addon():
    """A method of a model is defined once in the addon: no file of it
    overrides what another defines, so that the import order never decides
    behaviour (an integrator overrides it once, in their own addon)."""
    where = {}
    twice = []
    for path, node, name, _new in _model_classes():
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef):
                key = (name, stmt.name)
                if key in where:
                    twice.append(f"{name}.{stmt.name}: {where[key]} and {path.name}")
                where[key] = path.name
    assert not twice, "defined twice in the addon:\n" + "\n".join(twice)


def _xml_ids():
    """xml ids the addon's data and demo files declare (without module prefix)."""
    ids = set()
    for path in XML_FILES:
        tree = etree.parse(str(path))
        for node in tree.iter("record", "template", "menuitem"):
            if node.get("id"):
                ids.add(node.get("id"))
    return ids


def test_manifest_excludes_enterprise_subscriptions():
    # Odoo Enterprise's Subscriptions defines the same models: never both.
    assert "sale_subscription" in MANIFEST.get("excludes", [])


def test_assets_exist():
    for bundle, files in MANIFEST.get("assets", {}).items():
        for name in files:
            name = name[1] if isinstance(name, tuple | list) else name
            matches = list(ADDON.parent.glob(name))
            assert matches, f"asset {name} of {bundle} matches no file"


def test_acl_csv_references_existing_models():
    models = _defined_models()
    path = ADDON / "security" / "ir.model.access.csv"
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows, "ir.model.access.csv is empty"
    for row in rows:
        model_ref = row["model_id:id"]
        if "." in model_ref:
            continue  # a model of a dependency, e.g. sale.model_sale_order
        model = model_ref.removeprefix("model_")
        assert any(m.replace(".", "_") == model for m in models), (
            f"ACL {row['id']} references {model_ref}, which the addon does not define"
        )
        assert row["group_id:id"], f"ACL {row['id']} has no group (global ACLs are not wanted)"
    for model in models:
        key = "model_" + model.replace(".", "_")
        assert any(r["model_id:id"] == key for r in rows), f"model {model} has no ACL"


def test_internal_references_exist():
    """Every ref to this addon's own xml ids points to something declared."""
    declared = _xml_ids()
    for path in XML_FILES:
        text = path.read_text()
        for ref in re.findall(r"(?:ref=\"|ref\(')(subscription_close\.)?([\w]+)[\"']", text):
            prefix, xml_id = ref
            if prefix or "." not in xml_id:
                if xml_id.startswith(("model_", "field_")):
                    continue
                assert xml_id in declared, f"{path.name}: unknown reference {xml_id}"


def test_po_files_fully_translated():
    for path in sorted((ADDON / "i18n").glob("*.po")):
        catalog = polib.pofile(str(path))
        assert catalog.percent_translated() == 100, (
            f"{path.name}: untranslated {[e.msgid for e in catalog.untranslated_entries()]}"
        )


def _gen_readme():
    spec = importlib.util.spec_from_file_location("gen_readme", ROOT / "bin" / "gen_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_rst_is_generated_from_the_fragments():
    expected = _gen_readme().render()
    actual = (ADDON / "README.rst").read_text()
    assert actual == expected, "README.rst is stale: run python bin/gen_readme.py"
    for fragment in ("DESCRIPTION.md", "CONFIGURE.md", "USAGE.md"):
        assert (ADDON / "readme" / fragment).is_file(), fragment


def test_readme_rst_is_valid():
    """Odoo renders README.rst with docutils: no warning, no error."""
    docutils_core = pytest.importorskip("docutils.core")
    docutils_core.publish_doctree(
        (ADDON / "README.rst").read_text(),
        settings_overrides={"halt_level": 2, "report_level": 2},
    )


def test_documentation_images_exist():
    """The images that README.md, README.rst and index.html show are shipped."""
    texts = {
        ROOT / "README.md": ROOT,
        ADDON / "README.rst": ADDON,
        ADDON / "static" / "description" / "index.html": ADDON / "static" / "description",
    }
    found = 0
    for path, base in texts.items():
        for image in re.findall(
            r"(?:\]\(|image:: |src=\")"
            r"((?:subscription_close/)?static/description/[\w.]+\.png|[\w]+\.png)",
            path.read_text(),
        ):
            found += 1
            assert (base / image).is_file(), f"{path.name} shows {image}, which does not exist"
    assert found >= 6, "the documentation shows the screenshots"
