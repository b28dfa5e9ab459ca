"""``APIManager``: the project's models as a JSON API under one URL prefix."""

from __future__ import annotations

import re
import threading
import typing as t
from collections.abc import Callable, Mapping

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, request
from werkzeug.routing import RequestRedirect

from ...config import PROJECT, ConfigError, Option, to_bool, to_int, to_list, to_str
from ...extension import Extension
from ...util.json import dumps
from .cors import ALLOW_HEADERS, CORS, EXPOSE_HEADERS
from .grammar import filter_pattern
from .model import METHODS, ModelOptions, ModelSpec, RelationSpec, check_options
from .openapi import document, listing
from .problems import FieldError, Problem, from_exception, invalid_input
from .query import Limits
from .views import Endpoints, empty, json_response

if t.TYPE_CHECKING:
    from ...project import Project

OPTIONS: tuple[Option, ...] = (
    Option("URL_PREFIX", to_str, "/api", "URL path under which the API is served."),
    Option("PAGE_SIZE", to_int, 20, "Items in a page when the request gives no 'limit'."),
    Option("MAX_PAGE_SIZE", to_int, 100, "Largest 'limit' a request may ask for (else 400)."),
    Option("MAX_DEPTH", to_int, 2, "Largest 'depth' a request may ask for (else 400)."),
    Option("INCLUDE_TOTAL", to_bool, True,
           "Count the items of every page ('total' in the body; '?total=false' skips it)."),
    Option("ADD_ALL_MODELS", to_bool, False,
           "Expose every model declared in the project's MODULES."),
    Option("MAX_BULK_ITEMS", to_int, 1000,
           "Most objects one POST of an array may create or upsert (else 422)."),
    Option("CORS_ORIGINS", to_list, [],
           "Origins whose pages may call the API from a browser (exact, or '*'); empty: no"
           " CORS."),
    Option("CORS_COOKIES", to_bool, False,
           "Let those pages send cookies (Access-Control-Allow-Credentials); not with '*'."),
    Option("CORS_MAX_AGE", to_int, 600, "Seconds a browser may keep a preflight's answer."),
    Option("CORS_ALLOW_HEADERS", to_list, ALLOW_HEADERS,
           "Request headers those pages may send (Access-Control-Allow-Headers)."),
    Option("CORS_EXPOSE_HEADERS", to_list, EXPOSE_HEADERS,
           "Response headers those pages may read (Access-Control-Expose-Headers)."),
)

AuthorizeHook = Callable[[str, t.Any], object]
ValidateHook = Callable[[str, dict[str, t.Any], t.Any], object]
ScopeHook = Callable[[], "sa.ColumnElement[bool] | None"]
_F = t.TypeVar("_F", bound=Callable[..., t.Any])


class APIManager(Extension):
    """Expose a flasker project's models as a JSON API.

    ``current_project.register_manager(APIManager(add_all_models=True))`` serves
    ``/api/<collection>/`` for every model of the project's MODULES. However it is
    registered (``APIManager(app)``, ``init_app(app)`` or ``register_manager``), it
    reads the ``[API]`` section (or ``config_section``): the keyword options are
    defaults, the section wins, and a key it does not know is a :class:`ConfigError`.

    :param app: a Flask app of a flasker project, to call :meth:`init_app` at once.
    :param config_section: the section to read instead of ``[API]``.
    :param add_all_models: expose every model of the project's MODULES.
    :param url_prefix: where the API lives (``/api``).
    :param page_size: items per page by default (20).
    :param max_page_size: the largest page a request may ask for (100).
    :param max_depth: the largest ``depth`` a request may ask for (2).
    :param include_total: count the total of each page (True).
    :param max_bulk_items: the most objects one POST of an array may write (1000).
    :param cors_origins: the origins whose pages may call the API (none: no CORS).
    :param cors_cookies: let them send cookies (False).
    :param cors_max_age: seconds a browser may keep a preflight's answer (600).
    :param cors_allow_headers: the request headers they may send.
    :param cors_expose_headers: the response headers they may read.
    """

    name = "flasker_api"
    config_section = "API"
    options = OPTIONS

    def __init__(self, app: Flask | None = None, *, config_section: str | None = None,
                 add_all_models: bool | None = None, url_prefix: str | None = None,
                 page_size: int | None = None, max_page_size: int | None = None,
                 max_depth: int | None = None, include_total: bool | None = None,
                 max_bulk_items: int | None = None,
                 cors_origins: t.Sequence[str] | None = None,
                 cors_cookies: bool | None = None, cors_max_age: int | None = None,
                 cors_allow_headers: t.Sequence[str] | None = None,
                 cors_expose_headers: t.Sequence[str] | None = None) -> None:
        self._declarations: list[tuple[type[t.Any] | None, dict[str, t.Any]]] = []
        self._authorizers: list[tuple[type[t.Any] | None, frozenset[str], AuthorizeHook]] = []
        self._validators: list[tuple[type[t.Any] | None, frozenset[str], ValidateHook]] = []
        self.scopes: dict[type[t.Any], ScopeHook] = {}
        #: Counts the declarations, so that each app's API rebuilds when it changes.
        self.version = 0
        super().__init__(app, config_section=config_section, add_all_models=add_all_models,
                         url_prefix=url_prefix, page_size=page_size,
                         max_page_size=max_page_size, max_depth=max_depth,
                         include_total=include_total, max_bulk_items=max_bulk_items,
                         cors_origins=cors_origins, cors_cookies=cors_cookies,
                         cors_max_age=cors_max_age, cors_allow_headers=cors_allow_headers,
                         cors_expose_headers=cors_expose_headers)

    # -- registration -----------------------------------------------------------------------

    def setup(self, app: Flask, project: Project, settings: dict[str, t.Any],
              section: str) -> APIState:
        """Serve the API on ``app``: its blueprint, and the 404s and 405s under its prefix."""
        state = APIState(self, project, settings, section)
        app.register_blueprint(state.blueprint)
        app.before_request(state.before_request)
        app.after_request(state.after_request)
        _exempt_from_csrf(app, state)
        return state

    def after_startup(self, project: Project) -> None:
        """Build the endpoints once the project's MODULES (and their models) are imported."""
        state = project.app.extensions.get(self.name)
        if isinstance(state, APIState) and state.manager is self:
            state.refresh()
            _exempt_from_csrf(project.app, state)

    def add_model(self, model: type[t.Any], **options: t.Any) -> None:
        """Expose ``model``; options given again for a model override the earlier ones.

        :param relationships: ``True`` (all), ``False`` (none) or a list of names.
        :param allow_put_many: allow ``PUT /collection/`` to change every (filtered) object.
        :param allow_delete_many: allow ``DELETE /collection/?filter=...`` to delete every
            matching object (``?all=true`` without a filter).
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

    def may_refuse(self, model: type[t.Any], method: str) -> bool:
        """Whether an ``authorize`` hook applies to ``method`` on ``model`` (and may say no)."""
        return any((target is None or target is model) and method in methods
                   for target, methods, _hook in self._authorizers)

    def check(self, model: type[t.Any], method: str, data: dict[str, t.Any],
              instance: t.Any) -> None:
        for target, methods, hook in self._validators:
            if (target is None or target is model) and method in methods:
                _refusal(hook(method, data, instance), model)

    # -- introspection ----------------------------------------------------------------------

    def openapi(self, app: Flask) -> dict[str, t.Any]:
        """The OpenAPI 3.1 document of the API served on ``app``."""
        state: APIState = self.state(app)
        state.refresh()
        return document(state, "")

    def exposes_all(self, add_all: bool) -> bool:
        """Whether every model is exposed: ``ADD_ALL_MODELS``, or ``add_all_models()`` called."""
        return add_all or any(target is None for target, _o in self._declarations)

    def resolved(self, models: t.Iterable[type[t.Any]], add_all: bool
                 ) -> dict[type[t.Any], ModelOptions]:
        """The options of each exposed model, applying the declarations in order."""
        exposed: list[type[t.Any]] = []
        if self.exposes_all(add_all):
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


def api_prefix(app: Flask) -> str | None:
    """The URL prefix the API is served under on ``app`` (``/api``), or ``None`` without one.

    The one place that knows where the API lives: the auth extension asks it which
    paths take bearer tokens and which writes need no CSRF token.
    """
    state = app.extensions.get(APIManager.name)
    return state.prefix if isinstance(state, APIState) else None


class APIState:
    """The API on one app: its settings and the specs of its models."""

    def __init__(self, manager: APIManager, project: Project, options: Mapping[str, t.Any],
                 section: str) -> None:
        self.manager = manager
        self.project = project
        config = project.config

        def where(key: str) -> str:  # where a value came from, for error messages
            source = config.source_of(section, key)
            return f" ({source})" if source else ""

        self.prefix = _prefix(options["URL_PREFIX"], section, where("URL_PREFIX"))
        for name, minimum in (("PAGE_SIZE", 1), ("MAX_PAGE_SIZE", 1), ("MAX_DEPTH", 0),
                              ("MAX_BULK_ITEMS", 1)):
            if options[name] < minimum:
                raise ConfigError(f"Config '{section}.{name}' has value {options[name]!r}"
                                  f"{where(name)}. It must be at least {minimum}.")
        if options["PAGE_SIZE"] > options["MAX_PAGE_SIZE"]:
            raise ConfigError(
                f"Config '{section}.PAGE_SIZE' ({options['PAGE_SIZE']}) is more than"
                f" '{section}.MAX_PAGE_SIZE' ({options['MAX_PAGE_SIZE']}): raise"
                " MAX_PAGE_SIZE or lower PAGE_SIZE."
            )
        self.limits = Limits(options["PAGE_SIZE"], options["MAX_PAGE_SIZE"],
                             options["MAX_DEPTH"], options["INCLUDE_TOTAL"])
        self.add_all = bool(options["ADD_ALL_MODELS"])
        #: The CORS policy, ``None`` when CORS is off (no ``CORS_ORIGINS``).
        self.cors = CORS.from_settings(options, section, where)
        self.max_bulk_items: int = options["MAX_BULK_ITEMS"]
        self.endpoints = Endpoints(self)
        self.specs: dict[type[t.Any], ModelSpec] = {}
        self.by_collection: dict[str, ModelSpec] = {}
        self.openapi_cache: dict[str, bytes] = {}
        self.filter_patterns: dict[str, re.Pattern[str]] = {}
        self._built: tuple[t.Any, ...] | None = None
        self._lock = threading.Lock()
        self.blueprint = self._blueprint()

    # -- models -----------------------------------------------------------------------------

    def project_models(self) -> list[type[t.Any]]:
        """The models declared in the project's MODULES (all models when it names none)."""
        packages = {m.split(".")[0] for m in self.project.config.get(PROJECT, "MODULES") or []}
        models = [m.class_ for m in self.project.registry.mappers]
        if packages:
            models = [m for m in models if m.__module__.split(".")[0] in packages]
        return sorted(models, key=lambda m: (m.__module__, m.__name__))

    def _stamp(self) -> tuple[t.Any, ...]:
        if self.manager.exposes_all(self.add_all):
            return (self.manager.version, self.project.registry.mappers)
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
            self.filter_patterns = {}
            self._built = stamp

    # -- Flask ------------------------------------------------------------------------------

    def _blueprint(self) -> Blueprint:
        bp = Blueprint(APIManager.name, __name__, url_prefix=self.prefix)
        every = [*METHODS, "OPTIONS"]
        rule = {"strict_slashes": False, "merge_slashes": False,
                "provide_automatic_options": False}
        bp.add_url_rule("/", "index", self.index, methods=["GET", "OPTIONS"], **rule)
        bp.add_url_rule("/openapi.json", "openapi", self.openapi, methods=["GET", "OPTIONS"],
                        **rule)
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

    def after_request(self, response: Response) -> Response:
        """Add the CORS headers (when CORS is on) to every response under the prefix."""
        if self.cors is not None and self.under_prefix(request.path):
            self.cors.apply(response)
        return response

    def handle_error(self, error: Exception) -> Response:
        problem = from_exception(error)
        db = self.project.db
        if db.registry.has():  # a failed write changes nothing
            db.rollback()
        return problem.response()

    def index(self) -> Response:
        if request.method == "OPTIONS":
            return _allow_get()
        return json_response(listing(self), etag=True)

    def readable_target(self, relation: RelationSpec) -> ModelSpec | None:
        """The model ``relation`` leads to, if the API serves its reads (as documented)."""
        target = self.specs.get(relation.target)
        return target if target is not None and "GET" in target.options.methods else None

    def filter_pattern(self, spec: ModelSpec) -> re.Pattern[str]:
        """The exact syntax of a filter of ``spec``, as the OpenAPI document gives it."""
        found = self.filter_patterns.get(spec.collection)
        if found is None:
            text = filter_pattern(spec, self.readable_target)
            # fullmatch: '$' of the document's pattern is the end, never before a newline.
            found = self.filter_patterns[spec.collection] = re.compile(text[1:-1])
        return found

    def openapi(self) -> Response:
        if request.method == "OPTIONS":
            return _allow_get()
        root = request.script_root
        body = self.openapi_cache.get(root)
        if body is None:
            body = self.openapi_cache[root] = dumps(document(self, root))
        response = Response(body, mimetype="application/json")
        response.add_etag()
        return t.cast(Response, response.make_conditional(request))


def _allow_get() -> Response:
    """The answer to ``OPTIONS`` (and to a CORS preflight) of a read-only URL."""
    response = empty(204)
    response.headers["Allow"] = "GET, HEAD, OPTIONS"
    return response


def _prefix(value: str, section: str, where: str = "") -> str:
    prefix = "/" + value.strip().strip("/")
    if prefix == "/" or "<" in prefix or "//" in prefix:
        raise ConfigError(f"Config '{section}.URL_PREFIX' has value {value!r}{where}. It must be"
                          " a path of its own, such as '/api'.")
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
