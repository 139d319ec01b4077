cmd_rollback() {
  to="" activation_timeout=600
  while [ $# -gt 0 ]; do
    case $1 in
      --to) to=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --activation-timeout) activation_timeout=${2-}; shift 2 ;;
      *) usage "rollback: unknown option '$1'" ;;
    esac
  done
  case $to in *[!0-9]*) usage "rollback: --to must be a generation number" ;; esac
  to=$(decimal "$to")
  check_activation_timeout rollback
  l_kind=rollback l_command="rollback${to:+ to $to}" l_since=$(now) l_phase=""
  deadline=$((l_since + activation_timeout))
  l_deadline=$((deadline + SETTLE_TIME))
  lock
  # A rollback decides the host's state anew: a reboot left unconfirmed is over.
  rm -f "$boot_file"
  from=$(current_generation)
  [ -n "$to" ] || to=$(previous_generation "${from:-0}")
  target=""
  [ -z "$to" ] || target=$(generation_path "$to")
  if [ -n "$to" ]; then
    g_why="no generation $to in $profile"
  elif [ -n "$from" ]; then
    g_why="no generation before $from in $profile: the host is on its oldest, there is none to go back to"
  else
    g_why="no generation in $profile: the host has no system profile to go back in"
  fi
  if [ -z "$to" ] || [ -z "$target" ] || ! generation_usable "$to"; then
    unlock
    printf '{"ok":false,"command":"rollback","result":"no-generation","exitCode":9,"message":%s,"generation":%s%s}\n' \
      "$(json_str "$g_why")" "$(json_num "$from")" "$(took_over_json)"
    exit 9
  fi
  # Killed halfway, a takeover finishes it: the host goes to the generation asked for.
  l_command="rollback to $to" l_path=$target l_action=switch l_prev_gen=$to l_prev_system=$target
  l_phase=switch
  write_info
  mark_phase rollback
  log "rolling back from generation ${from:-?} to $to ($target)"
  why="" switched=0
  was=$(resolve /run/current-system || true)
  if ! profile_env --switch-generation "$to" >&2; then
    why="switching the profile to generation $to failed"
  else
    remaining_set
    switched=1
    if [ "$r" -le 0 ] || ! run_switch "$target" switch "$r" rollback; then
      why="switching to generation $to failed"
      [ "$(remaining)" -gt 0 ] ||
        why="switching to generation $to ran past the activation timeout of ${activation_timeout}s; stopped it"
    fi
  fi
  [ -z "$why" ] || rollback_undo
  unlock
  if [ -n "$why" ]; then
    log "$why"
    printf '{"ok":false,"command":"rollback","result":"failed","exitCode":7,"message":%s,"from":%s,"generation":%s%s}\n' \
      "$(json_str "$why")" "$(json_num "$from")" "$(json_num "$(current_generation)")" \
      "$(took_over_json)"
    exit 7
  fi
  printf '{"ok":true,"command":"rollback","result":"rolled-back","from":%s,"generation":%s,"path":%s%s}\n' \
    "$(json_num "$from")" "$to" "$(json_str "$target")" "$(took_over_json)"
}

# A rollback that failed (its profile, or its switch, failed or ran out of time) goes back to
# where it was, as a failed activation does: the profile to generation $from, and the system
# that ran ($was) switched to again, bounded by ROLLBACK_TIMEOUT; $why then says where the
# host is.
rollback_undo() {
  u_back=1
  if [ -n "$from" ] && [ "$(current_generation)" != "$from" ]; then
    profile_env --switch-generation "$from" >&2 || u_back=0
  fi
  if [ "$switched" = 1 ] && [ -n "$was" ]; then
    log "$why; going back: switch-to-configuration switch ($was)"
    run_switch "$was" switch "$ROLLBACK_TIMEOUT" rollback || u_back=0
  fi
  if [ "$u_back" = 1 ]; then
    why="$why; back on generation ${from:-?} (${was:-no system ran})"
  else
    why="$why; going back to generation ${from:-?} failed too: the host runs $(resolve /run/current-system || echo nothing), its profile at generation $(current_generation)"
  fi
}

