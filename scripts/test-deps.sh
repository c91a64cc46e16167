#!/usr/bin/env bash
# test-deps.sh installs, with apt-get, the Debian packages the tests need when
# they are missing. It works as root (CI) and as a normal user with sudo.
set -eu

pkgs=(
	postgresql      # throw-away PostgreSQL for the store conformance tests
	softhsm2        # the PKCS#11 HSM of the tests
	opensc          # pkcs11-tool
	p11-kit         # p11-kit server, to run the SM2 token in its own process
	p11-kit-modules # p11-kit's client module
	openssl         # independent SM2/SM3/ECDSA verifier
	gcc             # cgo: PKCS#11 backend and the SM2 software token
	slapd           # external LDAP server of the directory tests (own instance, never the system service)
	ldap-utils      # ldapsearch, ldapmodify, ldapadd
	curl            # ldap:// and http:// fetches as a relying party would make them
	fonts-wqy-microhei # CJK font of generated seal pictures (never committed)
	poppler-utils   # pdfsig, pdftoppm: PDF seal checks
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
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
