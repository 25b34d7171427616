# shellcheck shell=bash
# Debian packages dealscore needs to build, test and run locally.
# Sourced by deploy/local/stack and tests/run: `ds_ensure_packages` installs
# whatever is missing (one `apt-get update` first), and does nothing at all on
# a machine that already has everything.

DS_PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  librdkafka-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev libh2o-dev
  libjansson-dev libcurl4-openssl-dev libssl-dev libxgboost-dev libcriterion-dev
  libcsv-dev libpq-dev
  clang libclang-rt-14-dev clang-format
  postgresql postgresql-contrib
  default-jre-headless maven curl
)

# Prints the packages from "$@" that are not installed. A Java runtime on the
# PATH counts for default-jre-headless (a machine may carry a JDK instead).
ds_missing_packages() {
  local p status
  for p in "$@"; do
    if [[ $p == default-jre-headless ]] && command -v java >/dev/null 2>&1; then
      continue
    fi
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || printf '%s\n' "$p"
  done
}

# ds_ensure_packages [PACKAGE...]: DS_PACKAGES, or the packages given.
ds_ensure_packages() {
  local missing sudo=() want=("$@")
  ((${#want[@]})) || want=("${DS_PACKAGES[@]}")
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "packages: not a Debian system, not checking packages" >&2
    return 0
  fi
  mapfile -t missing < <(ds_missing_packages "${want[@]}")
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "packages: missing ${missing[*]}, and not root and no sudo to install them" >&2
      return 1
    }
    sudo=(sudo -n)
  fi
  echo "packages: installing ${missing[*]}" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}
