# --- prune: old generations and garbage, after a confirmed activation.

# INT or TERM ($1) during a prune: stop what runs (what was removed stays removed).
prune_interrupted() {
  trap '' INT TERM
  stop_child
  unlock
  printf '{"ok":false,"command":"prune","result":"interrupted","exitCode":6,"message":%s}\n' \
    "$(json_str "interrupted by SIG$1")"
  exit 6
}

# Roots system $1 (the running or booted one) as $2 in the state directory, for the garbage
# collector: NixOS roots both itself; a host that is not NixOS may not.
root_system() {
  [ -n "$1" ] || return 0
  timeout -k "$KILL_GRACE" 20 nix-store --realise "$1" --add-root "$state_dir/$2" >/dev/null 2>&1 ||
    log "cannot root $1 for the garbage collector"
}

cmd_prune() {
  keep="" gc_timeout=300
  while [ $# -gt 0 ]; do
    case $1 in
      --keep) keep=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --gc-timeout) gc_timeout=${2-}; shift 2 ;;
      *) usage "prune: unknown option '$1'" ;;
    esac
  done
  keep=$(decimal "$keep") gc_timeout=$(decimal "$gc_timeout")
  if ! digits "$keep" || [ ${#keep} -gt 6 ] || [ "$keep" -lt 1 ]; then
    usage "prune: --keep must be a number of generations, from 1 to 999999"
  fi
  if ! digits "$gc_timeout" || [ ${#gc_timeout} -gt 6 ] || [ "$gc_timeout" -lt 1 ]; then
    usage "prune: --gc-timeout must be whole seconds, from 1 to 999999"
  fi
  l_kind=prune l_command="prune to $keep generations" l_since=$(now) l_phase=prune
  l_deadline=$((l_since + gc_timeout + SETTLE_TIME))
  lock
  trap 'prune_interrupted INT' INT
  trap 'prune_interrupted TERM' TERM
  cur=$(current_generation)
  back=$(previous_generation "${cur:-0}")
  newest=$(generations | tail -n "$keep")
  kept="" removed="" remove=""
  for g in $(generations); do
    if [ "$g" = "$cur" ] || [ "$g" = "$back" ] || printf '%s\n' "$newest" | grep -qx "$g"; then
      kept="$kept${kept:+,}$g"
    else
      remove="$remove $g" removed="$removed${removed:+,}$g"
    fi
  done
  if [ -n "$remove" ]; then
    log "removing generations$remove of $profile"
    # shellcheck disable=SC2086 # (numbers only)
    if ! timeout -k "$KILL_GRACE" 60 nix-env -p "$profile" --delete-generations $remove >&2; then
      unlock
      printf '{"ok":false,"command":"prune","result":"failed","exitCode":12,"message":%s,"generation":%s}\n' \
        "$(json_str "cannot remove generations$remove of $profile")" "$(json_num "$cur")"
      exit 12
    fi
  fi
  root_system "$(resolve /run/current-system || true)" gcroot-current
  root_system "$(resolve /run/booted-system || true)" gcroot-booted
  log "collecting garbage (at most ${gc_timeout}s)"
  gc="done" deleted=null freed=null
  bounded "$state_dir/gc-output" "$gc_timeout" nix-store --gc
  case $? in
    0)
      line=$(tail -n 1 "$state_dir/gc-output" 2>/dev/null)
      n=${line%% store paths deleted*} m=${line#*deleted, } m=${m%% MiB freed*}
      if digits "$n" && case $m in '' | *[!0-9.]*) false ;; esac; then deleted=$n freed=$m; fi ;;
    124 | 137) gc=timed-out; log "collecting garbage ran past ${gc_timeout}s; stopped it" ;;
    *) gc=failed; log "collecting garbage failed" ;;
  esac
  rm -f "$state_dir/gc-output"
  unlock
  printf '{"ok":true,"command":"prune","result":"pruned","kept":[%s],"removed":[%s],"gc":"%s","deletedPaths":%s,"freedMiB":%s,"generation":%s%s}\n' \
    "$kept" "$removed" "$gc" "$deleted" "$freed" "$(json_num "$cur")" "$(took_over_json)"
}

