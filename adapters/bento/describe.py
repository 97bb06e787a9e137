"""``python -m adapters.bento.describe --url URL``: what ``make serve`` is about to serve, read from
the store and the configuration exactly as the server reads them: each model with its versions,
aliases and placement, then the URLs to call and to read."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adapters.config.fields import ConfigError
from adapters.config.settings import Settings
from adapters.models.repository import Holder, Repository
from adapters.protocol.errors import VersionNotFound


def describe(settings: Settings, url: str) -> str:
    repository: Repository[Holder] = Repository(settings.models, settings.rollout, {})
    lines = []
    for name in settings.models:
        try:
            model = repository.open(name)
        except (ValueError, VersionNotFound) as exc:
            lines.append(f"  {name}: cannot be served: {getattr(exc, 'message', exc)}")
            continue
        aliases = ", ".join(
            [f"{a} -> {v.version}" for a, v in model.aliases.items()]
            + [f"{a} -> {' / '.join(s.targets)}" for a, s in model.splits.items()]
        )
        unavailable = len(repository.unavailable.get(name, {}))
        lines.append(
            f"  {name}: {len(model.versions)} version(s) ({aliases}; unversioned routes use "
            f"{settings.default_version(name)}), {settings.placement(name).value}"
            + (f", {unavailable} unavailable" if unavailable else "")
        )
    return "\n".join(["serving:", *lines, f"V2 API:  {url}/v2", f"V2 docs: {url}/v2/docs"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.bento.describe", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    args = parser.parse_args(argv)
    try:
        print(describe(Settings.from_env(), args.url.rstrip("/")))
    except ConfigError as exc:
        print(f"oip-sklearn: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
