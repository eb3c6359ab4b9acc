# Builds a release's virtualenv: run by the app user under the service's sandbox, in
# its own copy of the code (tasks/venv.yml passes this text to `sh -c`; pip and uv
# run the dependencies' build code, never as root).
#   $0  where the build sees the virtualenv (venvs/<key>: the scripts name it)
#   $1  the installer: uv or pip
#   $2  what the release tool's plan found to make it from: requirements, uv.lock,
#       pylock.toml, pyproject or none; $3 that file, relative to the code
#   $4… packages installed besides (the WSGI server, app_pip_packages, a wheel)
# uv: FLASKDEPLOY_UV names the binary, UV_CACHE_DIR its cache (the app user's).
set -eu
venv=$0 installer=$1 kind=$2 file=$3
shift 3
if [ "$installer" = pip ]; then
  case $kind in
    requirements) set -- "--requirement=$file" "$@" ;;
    none) ;;
    *) echo "$file: pip installs from a requirements file only; set app_venv_installer: uv" \
         "(or app_dependencies: requirements with app_requirements_file)" >&2
       exit 2 ;;
  esac
  /usr/bin/python3 -m venv "$venv"
  if [ $# -gt 0 ]; then
    exec "$venv/bin/python" -m pip install --no-cache-dir --no-input --disable-pip-version-check \
      --progress-bar off "$@"
  fi
  exit 0
fi
uv=${FLASKDEPLOY_UV:?}
# The server's Python only (no download), the system's CA certificates, files copied
# out of the cache (root copies the virtualenv afterwards: nothing shared with the
# cache), bytecode compiled now (the virtualenv is read-only once root's).
export UV_PYTHON_DOWNLOADS=never UV_SYSTEM_CERTS=1 UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_NO_PROGRESS=1
/usr/bin/python3 -m venv --without-pip "$venv"
case $kind in
  # Exactly the locked versions; a uv.lock that does not match pyproject.toml fails.
  uv.lock) UV_PROJECT_ENVIRONMENT=$venv "$uv" sync --locked --no-dev --no-install-project \
             --python "$venv/bin/python" ;;
  # (uv installs a pylock.toml alone)
  pylock.toml) "$uv" pip install --python "$venv/bin/python" --requirement "$file" ;;
  requirements | pyproject) set -- --requirement "$file" "$@" ;;
esac
if [ $# -gt 0 ]; then
  case $kind in
    # The packages besides a lock may add to it, never move a locked version: what the
    # lock installed constrains them (a clash fails the build, naming both).
    uv.lock | pylock.toml)
      "$uv" pip freeze --python "$venv/bin/python" > .flaskdeploy-locked.txt
      set -- --constraint .flaskdeploy-locked.txt "$@" ;;
  esac
  exec "$uv" pip install --python "$venv/bin/python" "$@"
fi
