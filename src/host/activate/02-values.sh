# Where a link leads, only if it leads somewhere that exists (else empty).
resolve() { [ -e "$1" ] && readlink -f "$1"; }

# A store path in canonical form: /nix/store/, 32 characters of Nix's base-32, "-" and a name of
# Nix's characters, nothing before or after (no "..", ".", "//", trailing part or second line).
STORE_PATH_RE='/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+._?=-]{1,211}'

# Whether $1 is a store path in canonical form. Nix checks a path by its text while the kernel
# follows every link and ".." on the way, so nothing else is taken where a path is checked.
store_path_form() {
  case $1 in *[!A-Za-z0-9+._?=/-]*) return 1 ;; esac
  printf '%s\n' "$1" | LC_ALL=C grep -qx -E -e "$STORE_PATH_RE"
}

# Whether store path $1 (in canonical form, present) resolves to itself: no link on the way or
# at its end, so that what runs from it is what Nix checked.
store_path_resolves() { [ "$(readlink -f "$1" 2>/dev/null)" = "$1" ]; }

now() { date +%s; }

# Epoch seconds as UTC ISO 8601.
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || printf '%s' "$1"; }

digits() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }

# Whole seconds without leading zeros (sh arithmetic reads 010 as octal).
decimal() {
  d=$1
  while case $d in 0?*) ;; *) false ;; esac; do d=${d#0}; done
  printf '%s' "$d"
}

