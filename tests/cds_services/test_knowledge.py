from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cds_services.knowledge import DEFAULT_PATH, DRUG_IDS, KnowledgeError, load_knowledge

RAW = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_packaged_knowledge_loads():
    kb = load_knowledge()
    assert kb.code_system == "urn:ixabepilone-cds:rules"
    assert kb.version
    assert set(kb.sources) >= {"L", "S", "F"}
    assert "dailymed.nlm.nih.gov" in kb.sources["L"].url
    assert kb.rule_display("platelets-low")
    assert {"ketoconazole", "rifampin", "capecitabine", "fluconazole"} <= kb.interacting_drugs
    assert "ixabepilone" not in kb.interacting_drugs
    assert kb.interacting_drugs <= DRUG_IDS
    assert kb.value("bsa-cap") == 2.2 and kb.value("dose-tolerance") == 0.10
    assert [b.dose_mg_per_m2 for b in kb.hepatic_bands] == [40, 32, 20]
    assert {k: v.value for k, v in kb.freshness.items()} == {
        "neutrophils": 7, "wbc": 7, "platelets": 7, "ast": 14, "alt": 14, "bilirubin": 14,
        "height": 365, "weight": 30, "pregnancy-test": 7,
    }


def test_every_strong_label_drug_has_its_class():
    kb = load_knowledge()
    label_inhibitors = {"ketoconazole", "itraconazole", "voriconazole", "clarithromycin", "telithromycin",
                        "atazanavir", "indinavir", "nelfinavir", "ritonavir", "saquinavir", "amprenavir",
                        "delavirdine", "nefazodone"}
    assert label_inhibitors <= kb.drugs_of_class("strong-inhibitor")
    assert {"dexamethasone", "phenytoin", "carbamazepine", "rifampin", "rifabutin", "phenobarbital",
            "st-johns-wort"} <= kb.drugs_of_class("strong-inducer")


def test_judgments_are_marked():
    kb = load_knowledge()
    for key in ("dose-tolerance", "radiotherapy-window", "live-vaccine-window"):
        assert kb.thresholds[key].judgment
    assert kb.thresholds["anc-min"].judgment is False


def mutate(fn):
    data = copy.deepcopy(RAW)
    fn(data)
    return data


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["thresholds"]["anc-min"].update(colour="red"), "thresholds.anc-min: unknown field(s) 'colour'"),
        (lambda d: d.update(extra=1), "knowledge: unknown field(s) 'extra'"),
        (lambda d: d["interactions"]["ketoconazole"].pop("source"), "interactions.ketoconazole: missing field(s) 'source'"),
        (lambda d: d["interactions"]["ketoconazole"].update(source="X"), "interactions.ketoconazole.source: unknown source key 'X'"),
        (lambda d: d["interactions"].update(aspirin={"class": "weak-inhibitor", "source": "F", "section": "x"}),
         "interactions.aspirin: 'aspirin' is not a known drug id"),
        (lambda d: d["interactions"]["ketoconazole"].update({"class": "sort-of"}), "interactions.ketoconazole.class"),
        (lambda d: d["hypersensitivity"]["cremophor"].update(severe="danger"),
         "hypersensitivity.cremophor.severe: 'danger' is not one of"),
        (lambda d: d["rules"].pop("dose-check"), "rules: missing field(s) 'dose-check'"),
        (lambda d: d.update(code_system="urn:other"), "code_system: must be"),
        (lambda d: d["premedication"].update(h2=["famotidine", "cimetidine", "omeprazole"]), "premedication.h2[2]"),
        (lambda d: d["premedication"]["suggest_h2"].update(drug="cimetidine"), "never_suggest"),
        (lambda d: d["thresholds"]["bsa-cap"].update(value="2.2"), "thresholds.bsa-cap.value: expected a number"),
        (lambda d: d["hepatic_bands"].reverse(), "hepatic_bands: rows must be ordered"),
    ],
)
def test_validation_failures_name_the_entry(tmp_path, change, message):
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(write(tmp_path, mutate(change)))
    assert message in str(err.value)


def test_knowledge_error_is_a_value_error(tmp_path):
    assert issubclass(KnowledgeError, ValueError)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_knowledge(bad)
    with pytest.raises(KnowledgeError, match="cannot read"):
        load_knowledge(tmp_path / "absent.json")
