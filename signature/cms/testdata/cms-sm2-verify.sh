#!/bin/sh
# cms-sm2-verify.sh SIGNED.der SIGNER-CERT.pem CONTENT-FILE
set -eu
in=$1; cert=$2; content=$3
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
openssl asn1parse -inform DER -in "$in" | sed 's/:d=/ d=/; s/hl= */hl=/; s/ l= */ l=/' > "$t/p"
line=$(grep ' d=5 ' "$t/p" | grep 'cont \[ 0 \]' | tail -1)        # SignerInfo.signedAttrs [0]
off=$(echo "$line" | awk '{print $1}')
hl=$(echo "$line" | awk '{sub("hl=","",$3); print $3}')
len=$(echo "$line" | awk '{sub("l=","",$4); print $4}')
dd if="$in" of="$t/sa" bs=1 skip="$off" count=$((hl + len)) status=none
printf '\061' | dd of="$t/sa" bs=1 count=1 conv=notrunc status=none # [0] IMPLICIT -> SET (0x31)
sigoff=$(grep ' d=5 ' "$t/p" | grep 'OCTET STRING' | tail -1 | awk '{print $1}')
openssl asn1parse -inform DER -in "$in" -strparse "$sigoff" -out "$t/sig" -noout
openssl pkeyutl -verify -certin -inkey "$cert" -rawin -digest sm3 \
  -pkeyopt distid:1234567812345678 -in "$t/sa" -sigfile "$t/sig"
md=$(grep ' d=8 ' "$t/p" | grep 'OCTET STRING' | tail -1 | sed 's/.*DUMP\]://' | tr 'A-F' 'a-f')
got=$(openssl dgst -sm3 -r "$content" | cut -d' ' -f1)
[ "$md" = "$got" ] && echo "messageDigest matches SM3(content)" || { echo "messageDigest MISMATCH"; exit 1; }
