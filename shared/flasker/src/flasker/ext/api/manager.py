"""``APIManager``: the project's models as a JSON API under one URL prefix."""

from __future__ import annotations

import threading
import typing as t
from collections.abc import Callable, Mapping

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, request
from werkzeug.routing import RequestRedirect

from ...config import ConfigError, Option, section_options, to_bool, to_int, to_str
from ...globals import EXTENSION_KEY as PROJECT_KEY
from .model import METHODS, ModelOptions, ModelSpec, check_options
from .problems import FieldError, Problem, from_exception, invalid_input
from .query import Limits
from .views import Endpoints, json_response

if t.TYPE_CHECKING:
    from ...project import Project

EXTENSION_KEY = "flasker_api"
BLUEPRINT = "flasker_api"

OPTIONS: tuple[Option, ...] = (
    Option("URL_PREFIX", to_str, "/api", "URL path under which the API is served."),
    Option("PAGE_SIZE", to_int, 20, "Items in a page when the request gives no 'limit'."),
    Option("MAX_PAGE_SIZE", to_int, 100, "Largest 'limit' a request may ask for (else 400)."),
    Option("MAX_DEPTH", to_int, 2, "Largest 'depth' a request may ask for (else 400)."),
    Option("INCLUDE_TOTAL", to_bool, True,
           "Count the items of every page ('total' in the body; '?total=false' skips it)."),
    Option("ADD_ALL_MODELS", to_bool, False,
           "Expose every model declared in the project's MODULES."),
)

AuthorizeHook = Callable[[str, t.Any], object]
ValidateHook = Callable[[str, dict[str, t.Any], t.Any], object]
ScopeHook = Callable[[], "sa.ColumnElement[bool] | None"]
_F = t.TypeVar("_F", bound=Callable[..., t.Any])


class APIManager:
    """Expose a flasker project's models as a JSON API.

    ``current_project.register_manager(APIManager(add_all_models=True))`` serves
    ``/api/<collection>/`` for every model of the project's MODULES. The keyword
    options are defaults: the ``[API]`` section given to ``register_manager`` wins.

    :param app: a Flask app of a flasker project, to call :meth:`init_app` at once.
    :param add_all_models: expose every model of the project's MODULES.
    :param url_prefix: where the API lives (``/api``).
    :param page_size: items per page by default (20).
    :param max_page_size: the largest page a request may ask for (100).
    :param max_depth: the largest ``depth`` a request may ask for (2).
    :param include_total: count the total of each page (True).
    """

    def __init__(self, app: Flask | None = None, *, add_all_models: bool = False,
                 url_prefix: str | None = None, page_size: int | None = None,
                 max_page_size: int | None = None, max_depth: int | None = None,
                 include_total: bool | None = None) -> None:
        self._defaults: dict[str, t.Any] = {
            "ADD_ALL_MODELS": add_all_models, "URL_PREFIX": url_prefix, "PAGE_SIZE": page_size,
            "MAX_PAGE_SIZE": max_page_size, "MAX_DEPTH": max_depth,
            "INCLUDE_TOTAL": include_total,
        }
        self._declarations: list[tuple[type[t.Any] | None, dict[str, t.Any]]] = []
        self._authorizers: list[tuple[type[t.Any] | None, frozenset[str], AuthorizeHook]] = []
        self._validators: list[tuple[type[t.Any] | None, frozenset[str], ValidateHook]] = []
        self.scopes: dict[type[t.Any], ScopeHook] = {}
        self.version = 0
        if app is not None:
            self.init_app(app)

    # -- registration -----------------------------------------------------------------------

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None:
        """Serve the API on ``app``, a flasker project's Flask app, reading ``config_section``."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"An APIManager is already registered on the app '{app.name}'. Register it"
                " once per app: 'project.register_manager(api_manager)' calls 'init_app' for"
                " you, so do not call 'init_app' as well."
            )
        project = app.extensions.get(PROJECT_KEY)
        if project is None:
            raise RuntimeError(
                f"The app '{app.name}' is not a flasker project's app. Register the API with"
                " 'current_project.register_manager(api_manager)' in a module of the"
                " project's MODULES, or pass 'project.app'."
            )
        # An empty section name holds no keys: the constructor's options and the defaults.
        options = section_options(project.config, config_section or "", OPTIONS,
                                  defaults=self._defaults)
        state = APIState(self, app, project, options, config_section)
        app.extensions[EXTENSION_KEY] = state
        app.register_blueprint(state.blueprint)
        app.before_request(state.before_request)
        _exempt_from_csrf(app, state)

    def after_startup(self, project: Project) -> None:
        """Build the endpoints once the project's MODULES (and their models) are imported."""
        state = project.app.extensions.get(EXTENSION_KEY)
        if isinstance(state, APIState) and state.manager is self:
            state.refresh()
            _exempt_from_csrf(project.app, state)

    def add_model(self, model: type[t.Any], **options: t.Any) -> None:
        """Expose ``model``; options given again for a model override the earlier ones.

        :param relationships: ``True`` (all), ``False`` (none) or a list of names.
        :param allow_put_many: allow ``PUT /collection/`` to change every (filtered) object.
        :param methods: the HTTP methods served (default: GET, POST, PUT, PATCH, DELETE).
        :param properties: Python properties of the model to show (read-only).
        :param exclude: columns never shown nor written.
        :param collection_name: the URL segment (default: the table's name).
        """
        if not isinstance(model, type) or sa.inspect(model, raiseerr=False) is None:
            raise TypeError(f"add_model takes a mapped model class, not {model!r}.")
        self._declarations.append((model, check_options(options, f"add_model({model.__name__})")))
        self.version += 1

    def add_all_models(self, **options: t.Any) -> None:
        """Expose every model of the project's MODULES, with the options of :meth:`add_model`."""
        self._declarations.append((None, check_options(options, "add_all_models()")))
        self.version += 1

    # -- hooks ------------------------------------------------------------------------------

    def authorize(self, model: type[t.Any] | None = None,
                  methods: t.Iterable[str] = METHODS) -> Callable[[_F], _F]:
        """Register ``hook(method, key) -> bool``; a false answer is a 403.

        ``key`` is the object's key, or ``None`` for a collection. ``model=None``
        applies the hook to every model.
        """
        chosen = _methods(methods, "authorize")

        def register(hook: _F) -> _F:
            self._authorizers.append((model, chosen, hook))
            return hook

        return register

    def validate(self, model: type[t.Any] | None = None,
                 methods: t.Iterable[str] = ("POST", "PUT", "PATCH")) -> Callable[[_F], _F]:
        """Register ``hook(method, data, instance)`` run before a write; refusing is a 422.

        ``data`` holds the validated fields (related objects for relationships);
        ``instance`` is the object changed (``None`` for POST and PUT on many). The
        hook refuses by returning ``False``, a message, or ``{field: reason}``.
        """
        chosen = _methods(methods, "validate")

        def register(hook: _F) -> _F:
            self._validators.append((model, chosen, hook))
            return hook

        return register

    def scope(self, model: type[t.Any]) -> Callable[[_F], _F]:
        """Register ``hook() -> criterion | None`` limiting every query of ``model``.

        The criterion (such as ``Note.owner_id == current_user.id``) applies to lists,
        single objects, relationships, filters and writes; ``None`` means no limit.
        """

        def register(hook: _F) -> _F:
            self.scopes[model] = hook
            return hook

        return register

    def allows(self, model: type[t.Any], method: str, key: t.Any) -> bool:
        for target, methods, hook in self._authorizers:
            if (target is None or target is model) and method in methods and not hook(method, key):
                return False
        return True

    def check(self, model: type[t.Any], method: str, data: dict[str, t.Any],
              instance: t.Any) -> None:
        for target, methods, hook in self._validators:
            if (target is None or target is model) and method in methods:
                _refusal(hook(method, data, instance), model)

    # -- introspection ----------------------------------------------------------------------

    def openapi(self, app: Flask) -> dict[str, t.Any]:
        """The OpenAPI 3.1 document of the API served on ``app``."""
        from .openapi import document  # noqa: PLC0415

        state = _state(app)
        state.refresh()
        return document(state, "")

    def resolved(self, models: t.Iterable[type[t.Any]], add_all: bool
                 ) -> dict[type[t.Any], ModelOptions]:
        """The options of each exposed model, applying the declarations in order."""
        exposed: list[type[t.Any]] = []
        if add_all or any(target is None for target, _o in self._declarations):
            exposed += list(models)
        exposed += [m for m, _o in self._declarations if m is not None and m not in exposed]
        out: dict[type[t.Any], ModelOptions] = {}
        for model in exposed:
            merged: dict[str, t.Any] = {}
            for target, given in self._declarations:
                if target is None or target is model:
                    merged.update(given)
            out[model] = ModelOptions(**merged)
        return out


class APIState:
    """The API on one app: its settings and the specs of its models."""

    def __init__(self, manager: APIManager, app: Flask, project: Project,
                 options: Mapping[str, t.Any], section: str | None) -> None:
        self.manager = manager
        self.project = project
        self.section = section or "API"
        self.prefix = _prefix(options["URL_PREFIX"], self.section)
        for name, minimum in (("PAGE_SIZE", 1), ("MAX_PAGE_SIZE", 1), ("MAX_DEPTH", 0)):
            if options[name] < minimum:
                raise ConfigError(f"Config '{self.section}.{name}' has value {options[name]!r}."
                                  f" It must be at least {minimum}.")
        if options["PAGE_SIZE"] > options["MAX_PAGE_SIZE"]:
            raise ConfigError(
                f"Config '{self.section}.PAGE_SIZE' ({options['PAGE_SIZE']}) is more than"
                f" '{self.section}.MAX_PAGE_SIZE' ({options['MAX_PAGE_SIZE']}): raise"
                " MAX_PAGE_SIZE or lower PAGE_SIZE."
            )
        self.limits = Limits(options["PAGE_SIZE"], options["MAX_PAGE_SIZE"],
                             options["MAX_DEPTH"], options["INCLUDE_TOTAL"])
        self.add_all = bool(options["ADD_ALL_MODELS"])
        self.endpoints = Endpoints(self)
        self.specs: dict[type[t.Any], ModelSpec] = {}
        self.by_collection: dict[str, ModelSpec] = {}
        self.openapi_cache: dict[str, bytes] = {}
        self._built: tuple[t.Any, ...] | None = None
        self._lock = threading.Lock()
        self.blueprint = self._blueprint()

    # -- models -----------------------------------------------------------------------------

    def project_models(self) -> list[type[t.Any]]:
        """The models declared in the project's MODULES (all models when it names none)."""
        from ...config import PROJECT  # noqa: PLC0415
        from ...util.models import Model  # noqa: PLC0415

        packages = {m.split(".")[0] for m in self.project.config.get(PROJECT, "MODULES") or []}
        models = [m.class_ for m in Model.registry.mappers]
        if packages:
            models = [m for m in models if m.__module__.split(".")[0] in packages]
        return sorted(models, key=lambda m: (m.__module__, m.__name__))

    def _stamp(self) -> tuple[t.Any, ...]:
        if self.add_all or any(target is None for target, _o in self.manager._declarations):
            from ...util.models import Model  # noqa: PLC0415

            return (self.manager.version, Model.registry.mappers)
        return (self.manager.version,)

    def refresh(self) -> None:
        """(Re)build the specs when models or declarations changed since the last build."""
        stamp = self._stamp()
        if stamp == self._built:
            return
        with self._lock:
            if stamp == self._built:
                return
            resolved = self.manager.resolved(self.project_models(), self.add_all)
            specs = {model: ModelSpec.build(model, options) for model, options in resolved.items()}
            by_collection: dict[str, ModelSpec] = {}
            for spec in specs.values():
                other = by_collection.get(spec.collection)
                if other is not None:
                    raise RuntimeError(
                        f"The models '{other.name}' and '{spec.name}' would both be served at"
                        f" '{self.prefix}/{spec.collection}/': give one another name with"
                        f" 'api_manager.add_model({spec.name}, collection_name=...)'."
                    )
                by_collection[spec.collection] = spec
            self.specs, self.by_collection = specs, by_collection
            self.openapi_cache = {}
            self._built = stamp

    # -- Flask ------------------------------------------------------------------------------

    def _blueprint(self) -> Blueprint:
        bp = Blueprint(BLUEPRINT, __name__, url_prefix=self.prefix)
        every = [*METHODS, "OPTIONS"]
        rule = {"strict_slashes": False, "merge_slashes": False,
                "provide_automatic_options": False}
        bp.add_url_rule("/", "index", self.index, methods=["GET"], **rule)
        bp.add_url_rule("/openapi.json", "openapi", self.openapi, methods=["GET"], **rule)
        bp.add_url_rule("/<collection>/", "collection", self.endpoints.collection,
                        methods=every, **rule)
        bp.add_url_rule("/<collection>/<path:rest>", "member", self.endpoints.member,
                        methods=every, **rule)
        bp.register_error_handler(Exception, self.handle_error)
        return bp

    def under_prefix(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def before_request(self) -> Response | None:
        """Build what changed, and answer a URL under the prefix that matched no rule."""
        if not self.under_prefix(request.path):
            return None
        self.refresh()
        error = request.routing_exception
        if error is not None and not isinstance(error, RequestRedirect):
            return from_exception(error).response()
        return None

    def handle_error(self, error: Exception) -> Response:
        problem = from_exception(error)
        db = self.project.db
        if db.registry.has():  # a failed write changes nothing
            db.rollback()
        return problem.response()

    def index(self) -> Response:
        from .openapi import index  # noqa: PLC0415

        return json_response(index(self), etag=True)

    def openapi(self) -> Response:
        from ...util.json import dumps  # noqa: PLC0415
        from .openapi import document  # noqa: PLC0415

        root = request.script_root
        body = self.openapi_cache.get(root)
        if body is None:
            body = self.openapi_cache[root] = dumps(document(self, root))
        response = Response(body, mimetype="application/json")
        response.add_etag()
        return t.cast(Response, response.make_conditional(request))


def _state(app: Flask) -> APIState:
    state = app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, APIState):
        raise RuntimeError(f"No APIManager is registered on the app '{app.name}': call"
                           " 'project.register_manager(api_manager)' first.")
    return state


def _prefix(value: str, section: str) -> str:
    prefix = "/" + value.strip().strip("/")
    if prefix == "/" or "<" in prefix or "//" in prefix:
        raise ConfigError(f"Config '{section}.URL_PREFIX' has value {value!r}. It must be a"
                          " path of its own, such as '/api'.")
    return prefix


def _methods(methods: t.Iterable[str], where: str) -> frozenset[str]:
    if isinstance(methods, str):
        methods = [methods]
    chosen = frozenset(m.upper() for m in methods)
    unknown = sorted(chosen - set(METHODS))
    if unknown:
        raise ValueError(f"{where}: unknown method {unknown[0]!r}; use some of"
                         f" {', '.join(METHODS)}.")
    return chosen


def _refusal(result: object, model: type[t.Any]) -> None:
    """Turn a validation hook's answer into nothing (accepted) or a 422."""
    if result is None or result is True:
        return
    if result is False:
        raise invalid_input([], f"The {model.__name__} was refused by a validation rule.")
    if isinstance(result, str):
        raise Problem.of("invalid-input", result, [FieldError("", result)])
    if isinstance(result, Mapping):
        raise invalid_input([FieldError(str(k), str(v)) for k, v in result.items()])
    raise TypeError(f"A validation hook of {model.__name__} returned {result!r}: return None,"
                    " True, False, a message, or a mapping of field to reason.")


def _exempt_from_csrf(app: Flask, state: APIState) -> None:
    """Exempt the API from Flask-WTF's CSRFProtect.

    The API takes JSON bodies only (else 415), which a browser cannot send to another
    site without a CORS preflight, so a cross-site form cannot forge a write.
    """
    csrf = app.extensions.get("csrf")
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(state.blueprint)
