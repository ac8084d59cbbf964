#!/usr/bin/env bash
# User servers run as their own accounts and must enter the checkout (venv, package,
# kernels). As root, open (o+x, traverse only) every parent folder that is closed.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exit 0
dir="$1"
while [ "$dir" != "/" ]; do
  if [ $(( 0$(stat -c '%a' "$dir") & 1 )) -eq 0 ]; then
    echo "Allowing other accounts to traverse $dir (o+x) so user servers can use the venv"
    chmod o+x "$dir"
  fi
  dir=$(dirname "$dir")
done
