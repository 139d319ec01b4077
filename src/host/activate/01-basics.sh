log() { printf 'activate: %s\n' "$*" >&2; }

# Marks the start of phase $1 for whoever drives the script: a line of its own on stderr,
# "activate: @phase NAME" (realise, secrets, profile, switch, reboot, health, rollback).
mark_phase() { printf 'activate: @phase %s\n' "$1" >&2; }

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

# A JSON string: escapes, and control characters dropped. Most values (paths, actions,
# tokens) need no escaping and take no subprocess.
json_str() {
  case $1 in
    *[\"\\]* | *[![:print:]]*)
      printf '"%s"' "$(printf '%s' "$1" | tr '\n\t' '  ' | tr -d '\000-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')" ;;
    *) printf '"%s"' "$1" ;;
  esac
}

# "null" for an empty value, a JSON string otherwise.
json_opt() { if [ -n "$1" ]; then json_str "$1"; else printf 'null'; fi; }
json_num() { if [ -n "$1" ]; then printf '%s' "$1"; else printf 'null'; fi; }

# Marks system $1 failed on this host for reason $2 (its first line, at most 500 bytes): the host
# runs it, and could not go back. `status` reports it while the host runs that system.
mark_failed() {
  printf 'path=%s\nsince=%s\nreason=%s\n' "$1" "$(date +%s)" \
    "$(printf '%s\n' "$2" | head -n 1 | head -c 500)" >"$state_dir/failed.tmp" &&
    mv -f "$state_dir/failed.tmp" "$state_dir/failed"
}

# The failed mark as JSON when it names the system the host runs, else null.
failed_json() {
  f_path=$(sed -n 's/^path=//p' "$state_dir/failed" 2>/dev/null)
  if [ -z "$f_path" ] || [ "$f_path" != "$(resolve /run/current-system || true)" ]; then
    printf 'null'
    return 0
  fi
  printf '{"path":%s,"since":%s,"reason":%s}' "$(json_str "$f_path")" \
    "$(json_num "$(sed -n 's/^since=//p' "$state_dir/failed" | grep -x '[0-9]*')")" \
    "$(json_str "$(sed -n 's/^reason=//p' "$state_dir/failed")")"
}

usage() {
  log "$1"
  printf '{"ok":false,"command":%s,"result":"usage","exitCode":2,"message":%s}\n' \
    "$(verb_json)" "$(json_str "$1")"
  exit 2
}

# The command being run, as JSON: one of the script's commands, or null (none, or unknown).
verb_json() {
  case ${command-} in
    activate | after-boot | confirm-boot | abort-boot | confirm | abort | rollback | prune | status | closure)
      json_str "$command" ;;
    *) printf 'null' ;;
  esac
}

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

