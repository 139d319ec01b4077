# --- Secrets (see the header): step 2, after realise and before the profile.

# A malformed bundle is the deployer's bug: exit 2, naming the line but never its content.
bundle_bad() { fail secrets 2 "secrets bundle: $1"; }

bundle_large() { fail secrets 11 "secrets bundle: larger than $MAX_SECRETS_BUNDLE bytes"; }

# Fetches the bundle from --secrets-url within SECRETS_TIMEOUT seconds (and what is left of the
# activation timeout), keeping at most one byte past MAX_SECRETS_BUNDLE, enough to refuse it.
# The URL may carry credentials (a presigned URL): it is never logged, and reaches curl in its
# configuration on its input, from the environment of the one command that fetches (root's
# alone to read), never in a process's arguments.
fetch_bundle() {
  case $secrets_url in
    none)
      printf 'nixship-secrets 1\n' >"$secrets_work/bundle" ||
        step_failed secrets 11 "cannot write $secrets_work/bundle"
      bundle_sha_check
      return 0
      ;;
    age:*) unseal_url ;;
  esac
  command -v curl >/dev/null 2>&1 ||
    fail secrets 11 "curl not found on the host: it fetches the secrets bundle"
  remaining_set
  [ "$r" -gt 0 ] || timed_out secrets
  [ "$r" -le "$SECRETS_TIMEOUT" ] || r=$SECRETS_TIMEOUT
  log "fetching the secrets bundle"
  # shellcheck disable=SC2016 # expanded by that sh, from its arguments
  # (The quoted script stays on one line: the SSM document drops indentation.)
  f_script='{ printf "url = \"%s\"\n" "$NIXSHIP_SECRETS_URL" | curl -fsS --proto =http,https --max-time "$1" --max-filesize "$2" -K - || echo "$?" >"$3.failed"; } | head -c "$(($2 + 1))" >"$3"'
  export NIXSHIP_SECRETS_URL="$secrets_url"
  bounded log "$r" sh -c "$f_script" fetch "$r" "$MAX_SECRETS_BUNDLE" "$secrets_work/bundle"
  f_status=$?
  unset NIXSHIP_SECRETS_URL
  f_curl=$(cat -- "$secrets_work/bundle.failed" 2>/dev/null)
  # (curl exits 63 for a size it was told in advance, 28 past --max-time.)
  if [ "$(($(wc -c <"$secrets_work/bundle")))" -gt "$MAX_SECRETS_BUNDLE" ] || [ "$f_curl" = 63 ]; then
    bundle_large
  fi
  case $f_status/$f_curl in
    0/) ;;
    124/* | 137/* | */28) step_failed secrets 11 "secrets bundle: fetching it took longer than ${r}s" ;;
    *) step_failed secrets 11 "secrets bundle: cannot fetch it (curl exit ${f_curl:-$f_status})" ;;
  esac
  bundle_sha_check
}

bundle_sha_check() {
  f_sha=$(sha256sum <"$secrets_work/bundle" | cut -c1-64)
  [ "$f_sha" = "$secrets_sha256" ] ||
    fail secrets 11 "secrets bundle: the one fetched has sha256 $f_sha, not $secrets_sha256"
}

# The bundle's URL sealed to this host's key (--secrets-url age:BASE64), opened with it: what
# SSM keeps of the command fetches nothing for anyone else. The URL goes to a file of the work
# directory (root's alone), read once and removed.
unseal_url() {
  find_age
  [ -r "$host_key" ] || step_failed secrets 11 "cannot read the host key $host_key"
  printf '%s' "${secrets_url#age:}" | base64 -d >"$secrets_work/url.age" 2>/dev/null ||
    bundle_bad "its sealed URL is not base64"
  remaining_set
  [ "$r" -gt 0 ] || timed_out secrets
  [ "$r" -le "$SECRETS_TIMEOUT" ] || r=$SECRETS_TIMEOUT
  bounded "$secrets_work/url" "$r" "$age" -d -i "$host_key" -- "$secrets_work/url.age" ||
    step_failed secrets 11 "secrets bundle: its URL cannot be opened with $host_key (not sealed to this host's key)"
  secrets_url=$(head -c "$MAX_SECRETS_URL" -- "$secrets_work/url")
  rm -f -- "$secrets_work/url" "$secrets_work/url.age"
  url_check "$secrets_url" || bundle_bad "its sealed URL $u_why"
}

# Refuses a bundle that breaks the format before anything is done, and writes its manifest
# (each line without BASE64) to $secrets_work/manifest.
check_bundle() {
  c_bundle=$secrets_work/bundle
  # Refused first: grep takes a file with a NUL for binary and prints no line (no check), and
  # the shell drops it from what it reads (a PATH would lose it).
  [ "$(tr -d '\000' <"$c_bundle" | wc -c)" = "$(wc -c <"$c_bundle")" ] ||
    bundle_bad "it holds a NUL byte"
  [ "$(head -n 1 -- "$c_bundle")" = "nixship-secrets 1" ] ||
    bundle_bad "line 1 is not \"nixship-secrets 1\""
  [ -z "$(tail -c 1 -- "$c_bundle")" ] || bundle_bad "its last line does not end with a newline"
  # NAME OWNER GROUP MODE PATH SHA256 BASE64, one space apart (lengths and ".." below).
  c_account='([a-z_][a-z0-9_-]*[$]?|[0-9]+)'
  c_line="[A-Za-z0-9][A-Za-z0-9_.-]* $c_account $c_account [0-7]{4}"
  c_line="$c_line /run(/[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*)+ [0-9a-f]{64} [A-Za-z0-9+/]+={0,2}"
  # (sed, not head, reads to the end: nothing upstream writes to a closed pipe.)
  c_bad=$(tail -n +2 -- "$c_bundle" | LC_ALL=C grep -a -n -v -E "^$c_line\$" | cut -d: -f1 | sed -n 1p)
  [ -z "$c_bad" ] || bundle_bad "line $((c_bad + 1)) is malformed"
  tail -n +2 -- "$c_bundle" | cut -d' ' -f1-6 >"$secrets_work/manifest" ||
    step_failed secrets 11 "cannot write $secrets_work/manifest"
  c_n=1
  while read -r c_name c_owner c_group _ c_path _ <&3; do
    c_n=$((c_n + 1))
    if [ ${#c_name} -gt 64 ] || [ ${#c_owner} -gt 32 ] || [ ${#c_group} -gt 32 ] ||
      [ ${#c_path} -gt 255 ]; then
      bundle_bad "line $c_n: a field is too long"
    fi
    case $c_name in *..*) bundle_bad "line $c_n: NAME holds \"..\"" ;; esac
  done 3<"$secrets_work/manifest"
  c_dup=$(awk 'names[$1]++ || paths[$5]++ { print NR + 1; exit }' "$secrets_work/manifest")
  [ -z "$c_dup" ] || bundle_bad "line $c_dup: its NAME or PATH is another secret's too"
}

# With pinned trust, every secret of the manifest must be one the system $path declares itself:
# its "NAME OWNER GROUP MODE PATH" a line of $path/nixship/secrets, which its signature covers.
# The caller chooses a secret's content, never where it goes or whose it is.
require_declared_secrets() {
  [ "$pinned" = 1 ] || return 0
  d_file=$path/nixship/secrets
  d_n=1
  while read -r d_name d_owner d_group d_mode d_path _ <&3; do
    d_n=$((d_n + 1))
    if [ ! -f "$d_file" ] ||
      ! head -c 65536 -- "$d_file" | grep -aFxq -e "$d_name $d_owner $d_group $d_mode $d_path"; then
      fail secrets 11 "secrets bundle line $d_n (secret $d_name): the system does not declare it so in $d_file (name, owner, group, mode and path must be one of its lines): this host's trust is pinned, and only its system says where secrets go and whose they are"
    fi
  done 3<"$secrets_work/manifest"
}

