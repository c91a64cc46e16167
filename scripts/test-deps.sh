#!/usr/bin/env bash
# test-deps.sh installs, with apt-get, the Debian packages the tests need when
# they are missing. It works as root (CI) and as a normal user with sudo.
set -eu

# package -> a file it installs, to tell whether it is there already.
pkgs=(
	"postgresql:/usr/lib/postgresql"
	"softhsm2:/usr/lib/softhsm/libsofthsm2.so"
	"opensc:/usr/bin/pkcs11-tool"
	"openssl:/usr/bin/openssl"
)

missing=()
for p in "${pkgs[@]}"; do
	name=${p%%:*}
	path=${p#*:}
	if [ ! -e "$path" ]; then
		missing+=("$name")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
echo "test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
