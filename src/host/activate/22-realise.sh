# Realises store path $1 ($2 says what it is, e.g. "the age package "), failing phase $3 with
# exit code $4, under the GC root $5: from the substituters (after substituter $6, when given:
# the delta step's local cache) with only the trusted keys and signatures required, bounded by
# what is left of the activation timeout; without substituters it must be on the host already.
# A realise that fails with the delta step's cache is tried once more without it
# (delta_abandoned): what deltas rebuilt never fails an activation the substituters serve.
realise_path() {
  if [ -n "$subs" ]; then
    mark_phase "$3"
    log "realising $2$1 from $subs"
    realise_from "$1" "$3" "$5" "${6:+$6 }$subs" && return 0
    if [ -n "$6" ]; then
      delta_abandoned
      realise_from "$1" "$3" "$5" "$subs" && return 0
    fi
    step_failed "$3" "$4" "$(realise_failure "$1" "$2")"
  elif ! nix-store --check-validity "$1" 2>/dev/null; then
    fail "$3" "$4" "$2$1 is not on this host, and no substituter was given"
  fi
}

# One realise of $1 (for phase $2) under the GC root $3 from the substituters $4, within what is
# left of the activation timeout.
realise_from() {
  remaining_set
  [ "$r" -gt 0 ] || timed_out "$2"
  bounded quiet "$r" nix-store --realise "$1" --add-root "$3" \
    --option substituters "$4" --option trusted-public-keys "$keys" \
    --option require-sigs true --option narinfo-cache-negative-ttl 0
}

# Why realising $2$1 from $subs failed: a substituter that cannot be reached is named (curl asks
# each http(s) one for its nix-cache-info, within 5 s); else the path is not there, not signed by
# a trusted key, or its copy is corrupt (a NAR that does not match its hash, a narinfo that does
# not parse: Nix's own words, in the log, say which).
realise_failure() {
  if command -v curl >/dev/null 2>&1; then
    for u_sub in $subs; do
      case $u_sub in http://* | https://*) ;; *) continue ;; esac
      u_err=$(curl -sS -o /dev/null --max-time 5 "${u_sub%/}/nix-cache-info" 2>&1) && continue
      printf 'cannot realise %s%s: the substituter %s cannot be reached (%s)' "$2" "$1" "$u_sub" \
        "$(printf '%s' "$u_err" | head -n 1)"
      return 0
    done
  fi
  printf 'cannot realise %s%s from %s: not there, not signed by a trusted key, or its copy there is corrupt (the log above says which)' "$2" "$1" "$subs"
}

