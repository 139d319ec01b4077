# --- closure: what a plan's diff needs of a system the cache lacks. nix-store --dump-db gives,
# per path: the path, its NarHash, its NarSize, its deriver, the number of its references, and
# those; awk numbers the paths and writes each as "PATH NARSIZE" and its references' numbers.
CLOSURE_LIMIT=700000
cmd_closure() {
  c_path=""
  while [ $# -gt 0 ]; do
    case $1 in
      --path) c_path=${2-}; shift 2 ;;
      *) usage "closure: unknown option '$1'" ;;
    esac
  done
  store_path_form "$c_path" ||
    usage "closure: --path must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after)"
  closure_fail() {
    printf '{"ok":false,"command":"closure","result":"%s","exitCode":%s,"message":%s}\n' \
      "$1" "$2" "$(json_str "$3")"
    exit "$2"
  }
  timeout -k "$KILL_GRACE" 20 nix-store --check-validity "$c_path" 2>/dev/null ||
    closure_fail absent 3 "$c_path is not in this host's store"
  c_db=$(mktemp) || closure_fail failed 13 "cannot make a temporary file"
  # shellcheck disable=SC2016 # $1 is the inner shell's: the path, passed as an argument.
  if ! timeout -k "$KILL_GRACE" 60 sh -c \
    'c=$(nix-store -qR "$1") && printf "%s\n" "$c" | xargs -r nix-store --dump-db' \
    sh "$c_path" >"$c_db" 2>/dev/null; then
    rm -f "$c_db"
    closure_fail failed 13 "cannot read the closure of $c_path within 60 s"
  fi
  # The program's lines start at the margin: the SSM document strips indentation, which must
  # change nothing sh runs (ssm-document.test.ts).
  c_out=$(awk '
st == 0 { n++; path[n] = $0; at[$0] = n; st = 1; next }
st == 1 { st = 2; next }
st == 2 { size[n] = $0; st = 3; next }
st == 3 { st = 4; next }
st == 4 { left = $0 + 0; refs[n] = ""; st = (left > 0) ? 5 : 0; next }
st == 5 { refs[n] = refs[n] " " $0; if (--left == 0) st = 0; next }
END {
for (i = 1; i <= n; i++) {
line = path[i] " " size[i]
k = split(refs[i], r, " ")
for (j = 1; j <= k; j++) line = line " " at[r[j]]
print line
}
}' "$c_db" | base64 | tr -d '\n' | head -c "$((CLOSURE_LIMIT + 1))")
  rm -f "$c_db"
  [ -n "$c_out" ] || closure_fail failed 13 "cannot read the closure of $c_path within 60 s"
  [ "${#c_out}" -le "$CLOSURE_LIMIT" ] ||
    closure_fail too-large 13 "the closure of $c_path is over $CLOSURE_LIMIT bytes encoded"
  printf '{"ok":true,"command":"closure","path":%s,"closure":"%s"}\n' "$(json_str "$c_path")" "$c_out"
}
