#!/usr/bin/env bash
# Installs everything the project needs on Debian 12: system packages (as root), uv, and a
# virtualenv in .venv with the project and its test dependencies. Safe to re-run: each
# step is skipped when already done.
#   scripts/bootstrap.sh          runtime + test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  postgresql-15            # billing DB and Dagster instance for integration/e2e tests
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core  # WeasyPrint (subset: 3x faster PDFs)
  # Names in any script print: Noto for Latin, Greek, Cyrillic, Arabic, Hebrew, Indic... (core),
  # Chinese, Japanese, Korean (cjk) and emoji (color-emoji); ~145 MB installed, ~79 MB download.
  fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji
  poppler-utils            # pdftotext, to test what the PDFs say
  chromium chromium-driver # headless UI screenshot test
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing system packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "bootstrap: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
UV="$(command -v uv || echo "python3 -m uv")"

if [[ ! -x .venv/bin/python ]]; then
  $UV venv --quiet --python python3.11 .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  # --compile-bytecode: every Dagster process (run workers, daemon, code servers, the CLI) imports
  # Dagster, SQLAlchemy and boto3; without .pyc files (PYTHONDONTWRITEBYTECODE, read-only venvs)
  # each one compiles them again: ~1.7 s of CPU per process start.
  $UV pip install --quiet --compile-bytecode --python .venv/bin/python -e '.[test]'
  rm -f .venv/.installed-* && touch "$stamp"
fi
