"""``flasker.Extension``: the one contract of flasker's extensions and of third-party ones."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask

from flasker import ConfigError, Extension, Option, Project
from flasker.config import to_int, to_str


class Greeter(Extension):
    """The README's example of a third-party extension."""

    name = "greeter"
    config_section = "GREETER"
    options = (Option("GREETING", to_str, "Hello"), Option("TIMES", to_int, 1))

    def __init__(self, app: Flask | None = None, *, greeting: str | None = None) -> None:
        self.calls: list[str] = []
        super().__init__(app, greeting=greeting)

    def setup(self, app: Flask, project: Project, settings: dict[str, t.Any],
              section: str) -> dict[str, t.Any]:
        app.add_url_rule("/hello", "hello", lambda: settings["GREETING"] * settings["TIMES"])
        self.calls.append(f"setup:{section}")
        return settings

    def before_startup(self, project: Project) -> None:
        self.calls.append(f"before_startup:{project.started}")

    def after_startup(self, project: Project) -> None:
        self.calls.append(f"after_startup:{project.started}")


def test_the_section_is_read_however_the_extension_is_registered(
        make_project: t.Callable[..., Project]) -> None:
    cfg = "[PROJECT]\nNAME = x\n[GREETER]\nGREETING = Hi\n"
    for register in (
        lambda p: Greeter(p.app),
        lambda p: Greeter().init_app(p.app),
        lambda p: p.register_manager(Greeter()),
    ):
        project = make_project(cfg)
        register(project)
        assert project.app.test_client().get("/hello").text == "Hi"
        assert project.app.extensions["greeter"] == {"GREETING": "Hi", "TIMES": 1}


def test_constructor_options_are_defaults_and_the_section_wins(
        make_project: t.Callable[..., Project]) -> None:
    project = make_project("[PROJECT]\nNAME = x\n")
    project.register_manager(Greeter(greeting="Hey"))
    assert project.app.test_client().get("/hello").text == "Hey"
    project = make_project("[PROJECT]\nNAME = x\n[GREETER]\nGREETING = Hi\nTIMES = 2\n")
    project.register_manager(Greeter(greeting="Hey"))
    assert project.app.test_client().get("/hello").text == "HiHi"


def test_another_section_can_be_named(make_project: t.Callable[..., Project]) -> None:
    project = make_project("[PROJECT]\nNAME = x\n[WELCOME]\nGREETING = Hi\n")
    greeter = project.register_manager(Greeter(), config_section="welcome")
    assert greeter.calls[0] == "setup:WELCOME"
    assert project.app.test_client().get("/hello").text == "Hi"


def test_an_unknown_key_is_a_config_error_with_a_suggestion(
        make_project: t.Callable[..., Project]) -> None:
    project = make_project("[PROJECT]\nNAME = x\n[GREETER]\nGRETING = Hi\n")
    with pytest.raises(ConfigError, match=r"Unknown key 'GRETING' in section \[GREETER\].*"
                                          r"Did you mean 'GREETING'\?"):
        project.register_manager(Greeter())


def test_a_bad_value_names_the_key_and_its_source(make_project: t.Callable[..., Project]) -> None:
    project = make_project("[PROJECT]\nNAME = x\n[GREETER]\nTIMES = twice\n")
    with pytest.raises(ConfigError, match=r"'GREETER.TIMES' has value 'twice' \(.*default.cfg:4\)"):
        Greeter(project.app)


def test_a_second_registration_is_refused(make_project: t.Callable[..., Project]) -> None:
    project = make_project()
    project.register_manager(Greeter())
    with pytest.raises(RuntimeError, match="already registered"):
        project.register_manager(Greeter())


def test_a_bare_flask_app_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not a flasker project's app"):
        Greeter(Flask("bare"))


def test_hooks_run_around_the_modules(make_project: t.Callable[..., Project],
                                      tmp_path: t.Any) -> None:
    from .conftest import write_project

    path = write_project(tmp_path / "hooks", "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True}}, load_modules=False)
    greeter = project.register_manager(Greeter())
    project.start()
    assert greeter.calls == ["setup:GREETER", "before_startup:False", "after_startup:True"]
    late = make_project().register_manager(Greeter())
    assert late.calls == ["setup:GREETER", "after_startup:True"]  # registered after start-up


def test_state_names_the_missing_registration(make_project: t.Callable[..., Project]) -> None:
    project = make_project()
    with pytest.raises(RuntimeError, match="Did you forget to call 'project.register_manager"):
        Greeter().state(project.app)
