"""The only entry point: ``confsvc serve``, ``confsvc sites import``, ``confsvc users add``, ...

Bad input (a bad setting, a bad file, an unknown user) prints one clear message to stderr and
exits with code 2; nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from confsvc import __version__
from confsvc.app import resolve_secret
from confsvc.auth.accounts import Accounts
from confsvc.auth.sitelinks import SiteLinks
from confsvc.config import ConfigError, Settings
from confsvc.directory.service import Directory
from confsvc.store.redis import Redis

log = logging.getLogger("confsvc")

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
SHUTDOWN_S = 15


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise CliError(f"configuration error: {exc}") from None


def _run(coro_fn: Callable[[Settings], Awaitable[int]]) -> int:
    from confsvc.store.embedded import DataDirBusy, EmbeddedRedisError
    from confsvc.store.redis import StoreUnavailable

    settings = _settings()
    try:
        return asyncio.run(coro_fn(settings))
    except (StoreUnavailable, EmbeddedRedisError) as exc:
        code = EXIT_BAD_INPUT if isinstance(exc, DataDirBusy) else EXIT_UNAVAILABLE
        raise CliError(str(exc), code) from None


# --- serve -------------------------------------------------------------------------------------
async def _serve(settings: Settings) -> int:
    from aiohttp import web

    from confsvc.app import SecretMismatch, bootstrap, build_app, resolve_secret
    from confsvc.store.redis import open_store

    secret = resolve_secret(settings)
    async with open_store(settings, own=True) as redis:
        try:
            boot = await bootstrap(settings, redis, secret)
        except SecretMismatch as exc:
            raise CliError(str(exc)) from None
        app = build_app(settings, redis, secret)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
        where = settings.redis_url or f"embedded Redis in {Path(settings.data_dir).resolve() / 'redis'} (AOF, fsync always)"
        print(f"confsvc {__version__} serving on {settings.base_url}  (store: {where})", flush=True)
        sites = await app[_directory_key()].count()
        print(f"  directory: {sites} sites{' (demo directory of Yên Bái loaded now)' if boot.demo_loaded else ''}", flush=True)
        if boot.admin_created:
            if boot.admin_password:
                print(f"  first start: log in at {settings.base_url}/login as 'admin' with password: {boot.admin_password}", flush=True)
                print("  (shown once; change it with: confsvc users password admin)", flush=True)
            else:
                print(f"  first start: log in at {settings.base_url}/login as 'admin' with CONFSVC_ADMIN_PASSWORD", flush=True)
        else:
            print(f"  log in at {settings.base_url}/login", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            print("confsvc: stopping", flush=True)
            try:  # pages are told, events written; a part that hangs must not keep the node up
                await asyncio.wait_for(runner.cleanup(), SHUTDOWN_S)
            except TimeoutError:
                log.error("shutdown took over %d s; stopping anyway", SHUTDOWN_S)
    return 0


def _directory_key():  # noqa: ANN202
    from confsvc.http.context import DIRECTORY

    return DIRECTORY


# --- commands on the store ----------------------------------------------------------------------
StoreCommand = Callable[[Settings, "Redis"], Awaitable[None]]


def _with_store(command: StoreCommand) -> int:
    """Run ``command`` against the store (the running node's embedded Redis, or one started for
    it); an account error becomes a CLI error (exit 2)."""
    from confsvc.auth.accounts import AccountError
    from confsvc.store.redis import open_store

    async def run(settings: Settings) -> int:
        async with open_store(settings, own=False) as redis:
            try:
                await command(settings, redis)
            except AccountError as exc:
                raise CliError(str(exc)) from None
        return 0

    return _run(run)


# --- sites -------------------------------------------------------------------------------------
def _sites_import(args: argparse.Namespace) -> int:
    from confsvc.directory.model import DirectoryError, parse_csv

    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{args.file} is not UTF-8 text") from None
    try:
        sites = parse_csv(text)  # validate the whole file before touching the store
    except DirectoryError as exc:
        lines = [f"{args.file}: {len(exc.errors)} error(s); nothing was imported:"]
        lines += [f"  {e}" for e in exc.errors]
        raise CliError("\n".join(lines)) from None

    async def run(settings: Settings, redis: Redis) -> None:
        n = await Directory(redis).replace(sites)
        made = await SiteLinks(redis, resolve_secret(settings)).ensure([s.code for s in sites])
        print(f"imported {n} sites from {args.file} ({made} new join links)")

    return _with_store(run)


def _sites_export(args: argparse.Namespace) -> int:
    async def run(settings: Settings, redis: Redis) -> None:
        from confsvc.directory.model import to_csv

        sys.stdout.write(to_csv((await Directory(redis).tree()).ordered()))

    return _with_store(run)


def _sites_link(args: argparse.Namespace) -> int:
    async def run(settings: Settings, redis: Redis) -> None:
        if await Directory(redis).get(args.code) is None:
            raise CliError(f"no site with code {args.code!r}")
        links = SiteLinks(redis, resolve_secret(settings))
        token = await links.rotate(args.code) if args.rotate else await links.token(args.code)
        if token is None:
            raise CliError(f"the link of {args.code} is revoked; make a new one with --rotate")
        print(f"{settings.base_url}/s/{token}")

    return _with_store(run)


# --- users and tokens --------------------------------------------------------------------------
def _read_password(args: argparse.Namespace) -> str:
    """From stdin (--password-stdin) or asked twice on the terminal; checked for strength."""
    from confsvc.auth.passwords import WeakPassword, check_strength

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password: pass --password-stdin and pipe it in")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the two passwords differ")
    try:
        check_strength(password)
    except WeakPassword as exc:
        raise CliError(str(exc)) from None
    return password


def _users_add(args: argparse.Namespace) -> int:
    from confsvc.auth.accounts import AccountError, check_role, check_username

    try:
        check_username(args.username)
        check_role(args.role)
    except AccountError as exc:
        raise CliError(str(exc)) from None
    password = _read_password(args)

    async def run(settings: Settings, redis: Redis) -> None:
        user = await Accounts(redis).create(args.username, args.role, password, args.name or "")
        print(f"created {user.role} account {user.username!r}")

    return _with_store(run)


def _users_password(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def run(settings: Settings, redis: Redis) -> None:
        await Accounts(redis).set_password(args.username, password)
        print(f"password of {args.username!r} changed; its open sessions are signed out")

    return _with_store(run)


def _users_list(args: argparse.Namespace) -> int:
    async def run(settings: Settings, redis: Redis) -> None:
        for u in await Accounts(redis).all():
            print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}\t{u.display_name}")

    return _with_store(run)


def _users_disable(args: argparse.Namespace) -> int:
    async def run(settings: Settings, redis: Redis) -> None:
        accounts = Accounts(redis)
        await accounts.set_disabled(args.username, not args.enable)
        if not args.enable:
            await accounts.revoke_api_tokens(args.username)
        print(f"{args.username!r} {'enabled' if args.enable else 'disabled (and its API tokens revoked)'}")

    return _with_store(run)


def _tokens_create(args: argparse.Namespace) -> int:
    async def run(settings: Settings, redis: Redis) -> None:
        token = await Accounts(redis).create_api_token(args.username, args.label or "")
        print(token)
        print(f"(API token for {args.username}; shown once. Send it as 'Authorization: Bearer <token>'.)", file=sys.stderr)

    return _with_store(run)


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings()
    for name, value in sorted(vars(settings).items()):
        if name in ("secret_key", "turn_secret", "admin_password") and value:
            value = "(set)"
        print(f"{name} = {value}")
    return 0


# --- parser ------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="confsvc", description="Self-hosted video briefings for a province: one hall speaks to all.")
    p.add_argument("--version", action="version", version=f"confsvc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="run a node: pages, API, signaling and media (embedded Redis unless REDIS_URL is set)")
    s.set_defaults(func=lambda a: _run(_serve))

    sites = sub.add_parser("sites", help="the site directory").add_subparsers(dest="sites_cmd", required=True, parser_class=_Parser)
    si = sites.add_parser("import", help="replace the directory with a CSV file (code,name,kind,parent); all or nothing")
    si.add_argument("file")
    si.set_defaults(func=_sites_import)
    se = sites.add_parser("export", help="print the directory as CSV")
    se.set_defaults(func=_sites_export)
    sl = sites.add_parser("link", help="print a site's join link")
    sl.add_argument("code")
    sl.add_argument("--rotate", action="store_true", help="make a new link first (the old one stops working)")
    sl.set_defaults(func=_sites_link)

    users = sub.add_parser("users", help="accounts").add_subparsers(dest="users_cmd", required=True, parser_class=_Parser)
    ua = users.add_parser("add", help="create an account")
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=["admin", "organizer", "chair"])
    ua.add_argument("--name", help="display name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    ua.set_defaults(func=_users_add)
    up = users.add_parser("password", help="set an account's password")
    up.add_argument("username")
    up.add_argument("--password-stdin", action="store_true")
    up.set_defaults(func=_users_password)
    ul = users.add_parser("list", help="list accounts")
    ul.set_defaults(func=_users_list)
    ud = users.add_parser("disable", help="disable an account (and revoke its API tokens)")
    ud.add_argument("username")
    ud.add_argument("--enable", action="store_true", help="enable it again instead")
    ud.set_defaults(func=_users_disable)

    tokens = sub.add_parser("tokens", help="API tokens for scripts").add_subparsers(dest="tokens_cmd", required=True, parser_class=_Parser)
    tc = tokens.add_parser("create", help="create an API token for USER and print it once")
    tc.add_argument("username")
    tc.add_argument("--label", help="what the token is for")
    tc.set_defaults(func=_tokens_create)

    c = sub.add_parser("check-config", help="print the settings after parsing the environment")
    c.set_defaults(func=_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings_level = Settings.from_env().log_level
    except ConfigError:
        settings_level = "INFO"
    logging.basicConfig(level=settings_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"confsvc: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
