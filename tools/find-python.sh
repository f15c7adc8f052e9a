#!/usr/bin/env bash
# Print the path of a CPython interpreter of the given major.minor (e.g. 3.11), or fail with a hint.
# Looks at $POKEDEX_PYTHON<MAJ><MIN>, pyenv's versions, then python<ver> on PATH.
set -u
want="$1"
var="POKEDEX_PYTHON${want//./}"
cands=()
[ -n "${!var:-}" ] && cands+=("${!var}")
root="${PYENV_ROOT:-$HOME/.pyenv}"
for p in $(ls -d "$root"/versions/"$want".*/bin/python"$want" 2>/dev/null | sort -rV); do cands+=("$p"); done
command -v "python$want" >/dev/null 2>&1 && cands+=("$(command -v "python$want")")
cands+=("/usr/bin/python$want" "/usr/local/bin/python$want")
for c in "${cands[@]}"; do
  if [ -x "$c" ] && [ "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
    echo "$c"; exit 0
  fi
done
echo "error: no Python $want interpreter found (tried: ${cands[*]})" >&2
echo "  hint: install CPython $want (e.g. 'pyenv install $want' or your OS package python$want), or set $var" >&2
exit 1
