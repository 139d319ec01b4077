# Refuses $NIXSHIP_CHECK_PATHS unless each line is a store path in canonical form (or empty):
# the lines are data, one word each, never an option of the Nix that asks about them.
check_paths_form() {
  m_bad=$(printf '%s\n' "${NIXSHIP_CHECK_PATHS-}" |
    LC_ALL=C grep -n -v -x -E -e "$STORE_PATH_RE" -e '' | head -n 1 | cut -d: -f1)
  [ -z "$m_bad" ] ||
    usage "status --check-paths: line $m_bad of the paths is not a store path in canonical form (/nix/store/HASH-NAME, one a line)"
}

# The hash parts of the paths in $NIXSHIP_CHECK_PATHS that the store lacks, as a JSON array;
# fails when the store cannot be asked (no Nix, or no answer within 20 s).
missing_paths() {
  set -f
  m_invalid=$(printf '%s\n' "${NIXSHIP_CHECK_PATHS-}" | LC_ALL=C grep -x -E -e "$STORE_PATH_RE" |
    timeout -k "$KILL_GRACE" 20 xargs -r nix-store --check-validity --print-invalid 2>/dev/null) ||
    return 1
  m_sep=""
  printf '['
  for m_path in $m_invalid; do
    m_hash=${m_path#/nix/store/}
    printf '%s"%s"' "$m_sep" "${m_hash%%-*}"
    m_sep=,
  done
  printf ']'
}

# The sha256 of the installed secrets' manifest (of nothing, when none were ever installed).
secrets_digest() {
  if [ -f "$state_dir/secrets" ]; then sha256sum <"$state_dir/secrets"; else printf '' | sha256sum; fi |
    cut -c1-64
}

# What a reboot would change, as NixOS's own switch-to-configuration judges it: the booted
# system's kernel, initrd and kernel modules against the current system's (a switch loads none
# of them). JSON: due, which of them differ, since when the current system runs (the mtime of
# /run/current-system, Unix seconds), and the booted ones' targets (for the deployer's plan);
# null without a booted or a current system.
reboot_json() {
  b_sys=$(resolve /run/booted-system || true) c_sys=$(resolve /run/current-system || true)
  if [ -z "$b_sys" ] || [ -z "$c_sys" ]; then
    printf 'null'
    return 0
  fi
  b_changed="" b_parts=""
  for b_part in kernel initrd kernel-modules; do
    b_was=$(resolve "$b_sys/$b_part" || true)
    [ "$b_was" = "$(resolve "$c_sys/$b_part" || true)" ] ||
      b_changed="$b_changed${b_changed:+,}\"$b_part\""
    b_parts="$b_parts${b_parts:+,}\"$b_part\":$(json_opt "$b_was")"
  done
  b_due=false
  [ -z "$b_changed" ] || b_due=true
  printf '{"due":%s,"changed":[%s],"since":%s,"booted":{%s}}' "$b_due" "$b_changed" \
    "$(json_num "$(stat -c %Y /run/current-system 2>/dev/null | grep -x '[0-9]*')")" "$b_parts"
}

