"""Find recipes (the user's `recipes/` first, then the packaged ones) and compose them with their overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from navbuild.errors import RecipeError
from navbuild.recipe.schema import Recipe
from navbuild.recipe.validate import check_key_path, check_structure

RECIPE_GROUP = "recipe"
PRIMARY_CONFIG = "navbuild"
SCHEMA_NODE = "navbuild_schema"
PACKAGE_RECIPE = "package"


def package_data_dir(name: str) -> Path:
    """``conf`` or ``recipes``: inside the installed package (wheel) or at the checkout's top."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise RecipeError(f"navbuild's packaged '{name}' folder is missing (looked in {here} and {here.parent}); "
                      "reinstall navbuild", where="installation")


def recipe_dirs(cwd: Path) -> list[Path]:
    """Folders searched for recipes by name, first match wins: the user's, then the packaged."""
    dirs = [cwd / "recipes"]
    packaged = package_data_dir("recipes")
    if packaged.resolve() != dirs[0].resolve():
        dirs.append(packaged)
    return dirs


def find_recipe(ref: str, cwd: Path) -> Path:
    """Resolve ``mlp``, ``mlp.yaml`` or a path to a recipe file."""
    as_path = Path(ref).expanduser()
    if not as_path.is_absolute():
        as_path = cwd / as_path
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return as_path
    stem = ref[:-5] if ref.endswith(".yaml") else ref[:-4] if ref.endswith(".yml") else ref
    for folder in recipe_dirs(cwd):
        for ext in (".yaml", ".yml"):
            candidate = folder / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in recipe_dirs(cwd) if d.is_dir() for p in d.glob("*.y*ml")})
    import difflib

    close = difflib.get_close_matches(stem, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise RecipeError(f"recipe: no recipe named '{ref}'{hint}; searched "
                      f"{', '.join(str(d) for d in recipe_dirs(cwd))}; known: {', '.join(known) or 'none'}",
                      where="command line")


def recipe_name(ref: str) -> str:
    """The Hydra option name a recipe reference registers under (its file stem)."""
    return Path(ref).name.rsplit(".", 1)[0] if ref.endswith((".yaml", ".yml")) else Path(ref).name


def load_recipe_file(ref: str, cwd: Path) -> tuple[Any, Path | None]:
    """The recipe ``ref`` names, as an OmegaConf node, structure-checked, and its file.

    ``package`` with no such file is the empty recipe that continues a ``.nav`` package with
    the package's own recipe (its file is None).
    """
    from omegaconf import OmegaConf

    if ref == PACKAGE_RECIPE and not any((d / f"{ref}.yaml").is_file() for d in recipe_dirs(cwd)):
        return OmegaConf.create({}), None
    path = find_recipe(ref, cwd)
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - YAML errors are the user's to fix
        raise RecipeError(f"{path}: not valid YAML: {exc}", where="recipe") from None
    try:
        check_structure(OmegaConf.to_container(node, resolve=False), where=f"recipe {path}")
    except RecipeError as err:
        raise RecipeError([f"{path}: {p}" for p in err.problems], where="recipe") from None
    return node, path


def register(refs: Sequence[str], cwd: Path) -> dict[str, Path]:
    """Load, structure-check and register each referenced recipe in Hydra's ConfigStore.

    Recipes are registered (rather than put on Hydra's search path) so that the user's
    ``recipes/`` folder and the packaged one can both be searched, the user's first, and
    so that a recipe file needs no Hydra header to land at the top level.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=SCHEMA_NODE, node=Recipe)
    found: dict[str, Path] = {}
    problems: list[str] = []
    for ref in refs:
        try:
            node, path = load_recipe_file(ref, cwd)
        except RecipeError as err:
            problems.extend(err.problems)
            continue
        cs.store(group=RECIPE_GROUP, name=recipe_name(ref), node=node, package="_global_")
        if path is not None:
            found[recipe_name(ref)] = path
    if problems:
        raise RecipeError(problems, where="recipe")
    return found


@dataclass
class Composed:
    """A composed recipe: the config, the recipe's name and file."""

    config: Any  # omegaconf.DictConfig
    name: str
    path: Path | None


def split_recipe_override(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``recipe=...`` values (possibly a comma sweep) from the other overrides."""
    refs: list[str] = []
    rest: list[str] = []
    for o in overrides:
        if o.startswith("recipe="):
            refs.extend(v for v in o.split("=", 1)[1].split(",") if v)
        else:
            rest.append(o)
    return refs, rest


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    """Rewrite ``recipe=a.yaml,dir/b.yaml`` to the registered names ``recipe=a,b``."""
    out = []
    for o in overrides:
        if o.startswith("recipe="):
            names = [recipe_name(v) for v in o.split("=", 1)[1].split(",") if v]
            out.append("recipe=" + ",".join(names))
        else:
            out.append(o)
    return out


def check_override_keys(overrides: Sequence[str]) -> list[Any]:
    """Parse overrides with Hydra's grammar and check that each names a recipe key (did-you-mean
    otherwise); Hydra's own keys pass. Returns the parsed overrides."""
    if not overrides:
        return []  # Hydra's grammar (antlr) is not even imported for a plain `navbuild plan`
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # noqa: BLE001 - Hydra's parse errors name the override
        raise RecipeError(str(exc).splitlines()[0], where="command line") from None
    problems = []
    for ov in parsed:
        key = ov.key_or_group
        if key.startswith("hydra") or key == RECIPE_GROUP or ov.is_add() or ov.is_delete():
            continue
        problem = check_key_path(key)
        if problem:
            problems.append(f"override '{ov.input_line}': {problem}")
    if problems:
        raise RecipeError(problems, where="command line")
    return parsed


def compose(overrides: Sequence[str], cwd: Path) -> Composed:
    """Compose one recipe (no sweeps): the schema's defaults, the recipe, then the overrides.

    Overrides keep Hydra's syntax and messages (Hydra parses and applies them). Hydra's
    composition itself runs only when something needs it (a ``defaults`` list in the recipe,
    a config-group or ``hydra`` override): otherwise the recipe file is merged over the
    schema directly, which gives the same config without building Hydra's own.
    """
    refs, _ = split_recipe_override(overrides)
    if len(refs) > 1:
        raise RecipeError(f"recipe: several recipes given ({', '.join(refs)}); use -m to sweep them",
                          where="command line")
    ref = refs[0] if refs else "mlp"
    name = recipe_name(ref)
    rest = [o for o in overrides if not o.startswith("recipe=")]
    node, path = load_recipe_file(ref, cwd)  # the recipe's own problems are reported first
    parsed = check_override_keys(rest)
    if "defaults" in node or any(_needs_hydra(ov) for ov in parsed):
        return Composed(config=_compose_with_hydra(ref, rest, cwd), name=name, path=path)
    return Composed(config=_merge_over_schema(node, name, parsed), name=name, path=path)


def _needs_hydra(override: Any) -> bool:
    """Whether an override selects a config group or sets Hydra's own config."""
    return override.is_hydra_override() or override.package is not None or "/" in override.key_or_group


def _merge_over_schema(node: Any, name: str, parsed: list[Any]) -> Any:
    """The config Hydra would compose for a plain recipe file: schema, recipe, overrides."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    cfg = OmegaConf.structured(Recipe)
    try:
        cfg.merge_with(node)
    except OmegaConfBaseException as e:  # worded as Hydra words a failed merge of the recipe
        from hydra.errors import ConfigCompositionException

        failed = ConfigCompositionException(f"In '{RECIPE_GROUP}/{name}': {type(e).__name__} raised while "
                                            f"composing config:\n{e}")
        raise RecipeError(composition_message(failed), where="recipe") from None
    OmegaConf.set_struct(cfg, True)
    if not parsed:
        return cfg
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    try:
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
    except Exception as exc:  # noqa: BLE001 - every composition error is a recipe error
        raise RecipeError(composition_message(exc), where="recipe") from None
    return cfg


def _compose_with_hydra(ref: str, overrides: list[str], cwd: Path) -> Any:
    """Compose with Hydra's compose API (for recipes and overrides that use Hydra's features)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register([ref], cwd)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(package_data_dir("conf")), version_base="1.3"):
            return hydra_compose(PRIMARY_CONFIG, overrides=[f"{RECIPE_GROUP}={recipe_name(ref)}", *overrides])
    except Exception as exc:  # noqa: BLE001 - every composition error is a recipe error
        raise RecipeError(composition_message(exc), where="recipe") from None


def composition_message(exc: BaseException) -> list[str]:
    """Flatten Hydra/OmegaConf errors (message + cause chain) to short lines with key paths."""
    lines: list[str] = []
    seen = set()
    e: BaseException | None = exc
    while e is not None:
        text = str(e).strip()
        full_key = getattr(e, "full_key", None)
        first = text.splitlines()[0] if text else type(e).__name__
        if full_key and full_key not in first:
            first = f"{full_key}: {first}"
        # OmegaConf chains an unformatted copy of its message ("Value '$VALUE' ...") and the
        # Python error behind it (int('abc')), which says nothing the first line does not
        ours = type(e).__module__.split(".")[0] in ("hydra", "omegaconf") or e is exc
        if ours and first not in seen and "$VALUE" not in first and "$KEY" not in first:
            seen.add(first)
            lines.append(first)
        e = e.__cause__ or e.__context__
    prefix = "Error merging override "
    if len(lines) > 1 and lines[0].startswith(prefix):
        # one problem, not two: say what is wrong, then which override said it
        lines = [f"{lines[1]} (override {lines[0][len(prefix):]})", *lines[2:]]
    return lines[:3]


def to_recipe(cfg: Any, name: str) -> Any:
    """DictConfig -> a plain ``Recipe`` dataclass, with the name filled in."""
    from omegaconf import OmegaConf

    try:
        obj = OmegaConf.to_object(cfg)
    except Exception as exc:  # noqa: BLE001 - missing mandatory values and the like
        raise RecipeError(composition_message(exc), where="recipe") from None
    if isinstance(obj, dict):  # composed with hydra's own node at the top
        obj.pop("hydra", None)
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Recipe), obj))
    if not obj.name:
        obj.name = name
    return obj
