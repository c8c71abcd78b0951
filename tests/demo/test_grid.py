"""The demo's option lists come from its fields' roles (issue 25 section 5)."""

from dataclasses import dataclass, field

from llm_jepa.demo import run as demo_run
from llm_jepa.demo.run import DemoConfig, fields_with
from llm_jepa.options import CONTROL, PATH, SPEED


def test_the_option_lists_are_the_fields_roles():
    assert fields_with(PATH) == ("output", "data", "test_data")
    assert set(fields_with(*demo_run.NOT_SETTINGS)) == {"overwrite", "arms", "threads", "final_models_only"}


def test_a_new_field_with_a_role_lands_in_its_list_without_another_edit(monkeypatch, tmp_path):
    @dataclass
    class Wider(DemoConfig):
        cache: str | None = field(default=None, metadata=demo_run._roles(PATH, SPEED))  # a path, no setting
        retries: int = field(default=0, metadata=demo_run._roles(CONTROL))

    assert "cache" in fields_with(PATH, cls=Wider) and "cache" not in fields_with(PATH)
    monkeypatch.setattr(demo_run, "DemoConfig", Wider)
    monkeypatch.chdir(tmp_path)
    assert demo_run._absolute({"cache": "c"})["cache"] == str(tmp_path / "c")  # resolved as a path
    settings = demo_run._settings({"cache": "c", "retries": 3})
    assert "cache" not in settings and "retries" not in settings and settings["steps"] == DemoConfig().steps
