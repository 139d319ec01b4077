# --- activate

# --activation-timeout: whole seconds, 1 to 999999 (for command $1).
check_activation_timeout() {
  decimal_set "$activation_timeout"
  activation_timeout=$d
  if ! digits "$activation_timeout" || [ ${#activation_timeout} -gt 6 ] || [ "$activation_timeout" -lt 1 ]; then
    usage "$1: --activation-timeout must be whole seconds, from 1 to 999999"
  fi
}

# What is left of the activation timeout, in whole seconds: remaining_set sets r with no
# subshell; remaining prints it.
remaining_set() {
  now_set
  r=$((deadline - c_now))
  [ "$r" -gt 0 ] || r=0
}
remaining() { remaining_set; printf '%s' "$r"; }

# How a bounded step that failed ended ($1: its exit status; $2: its bound in seconds).
how_it_ended() {
  case $1 in
    124 | 137) printf 'took longer than %ss; stopped' "$2" ;;
    *) printf 'exited with %s' "$1" ;;
  esac
}

# Undoes what this activation changed: the profile back to the previous generation, and the
# previous system switched to again (bounded). Returns 0 when done, 1 when a step failed (r_why
# says which, and how it ended), 2 when nothing had changed, 3 when there is no previous system
# to go back to.
restore_previous() {
  r_done=0 r_failed=0 r_missing=0 r_system="" r_why=""
  if [ "$profile_set" = 1 ] && [ -n "$prev_gen" ] && [ "$(current_generation)" != "$prev_gen" ]; then
    r_new=$(current_generation)
    if profile_env --switch-generation "$prev_gen" >&2; then
      r_done=1
      forget_generation "$r_new"
    else
      r_status=$?
      r_failed=1
      r_why="nix-env --switch-generation $prev_gen $(how_it_ended "$r_status" "$PROFILE_TIMEOUT")"
    fi
  fi
  # A generation made but never switched to (stopped between its link and the switch).
  [ "$profile_set" = 0 ] || forget_generation "$l_new_gen"
  if [ "$switch_started" = 1 ] && [ "$action" != dry-activate ]; then
    r_system=$prev_system
    if [ "$action" = boot ]; then
      r_system=""
      [ -z "$prev_gen" ] || r_system=$(generation_path "$prev_gen")
    fi
    if [ -z "$r_system" ]; then
      r_missing=1
    else
      log "rolling back: switch-to-configuration $action ($r_system)"
      if run_switch "$r_system" "$action" "$ROLLBACK_TIMEOUT" rollback; then
        r_done=1
      else
        r_status=$?
        r_failed=1
        r_why="${r_why:+$r_why, }switch-to-configuration $action $(how_it_ended "$r_status" "$ROLLBACK_TIMEOUT")"
      fi
    fi
  fi
  [ "$r_failed" = 0 ] || return 1
  [ "$r_missing" = 0 ] || return 3
  [ "$r_done" = 1 ] || return 2
}

took_over_json() { [ -z "$took_over" ] || { printf ',"tookOver":'; json_str "$took_over"; }; }

# Ends a failed activation: stops what runs, undoes what it changed, and reports result $1
# (failed, timed-out or interrupted) in phase $2, with exit code $3 and message $4.
finish_failed() {
  trap '' INT TERM
  umask 022
  f_result=$1 f_phase=$2 code=$3 message=$4 rolled=false outcome=rolled-back
  case $f_phase in realise | secrets | profile | switch | reboot | health) ;; *) f_phase=realise ;; esac
  stop_child
  secrets_discard
  delta_discard
  [ -z "$h_dir" ] || rm -rf "$h_dir"
  if [ "$profile_set" = 1 ] || [ "$switch_started" = 1 ]; then
    mark_phase rollback
    log "$message; rolling back to generation ${prev_gen:-?} (${prev_system:-no previous system})"
    l_phase=rollback
    write_info
    restore_previous
    case $? in
      0) rolled=true ;;
      1) message="$message; the rollback failed too ($r_why)" code=7 outcome=rollback-failed
        log "$message"
        [ "$switch_started" = 0 ] || mark_failed "$path" "$message" ;;
      3) outcome=rollback-failed
        message="$message; no earlier system to go back to: the host runs $path, marked failed until an activation succeeds"
        log "$message"
        mark_failed "$path" "$message" ;;
    esac
  else
    log "$message"
  fi
  # The lock goes first: once abort sees the outcome, the host takes the next activation.
  unlock
  if [ -n "$token" ]; then
    write_result "$token" "$outcome" "$message"
    rm -f "$state_dir/abort-$token"
  fi
  printf '{"ok":false,"command":"%s","result":%s,"phase":%s,"exitCode":%s,"message":%s,"path":%s,"action":%s,"rolledBack":%s,"previous":%s,"previousGeneration":%s,"generation":%s%s}\n' \
    "$outcome_command" "$(json_str "$f_result")" "$(json_str "$f_phase")" "$code" "$(json_str "$message")" \
    "$(json_str "$path")" "$(json_str "$action")" "$rolled" "$(json_opt "$prev_system")" \
    "$(json_num "$prev_gen")" "$(json_num "$(current_generation)")" "$(took_over_json)"
  exit "$code"
}

fail() { finish_failed failed "$@"; }

# --expect-current: the host runs another system than the caller expected (changed since the
# caller looked: by hand, or by another deploy). Nothing was done, so no outcome is kept for
# the token: an abort asking after it hears that nothing began.
changed_since() {
  trap '' INT TERM
  c_message="it runs ${prev_system:-no system}, not $expect_current, which this activation expected: changed since; nothing was done"
  log "$c_message"
  unlock
  printf '{"ok":false,"command":"activate","result":"changed","phase":"realise","exitCode":14,"message":%s,"path":%s,"action":%s,"rolledBack":false,"previous":%s,"previousGeneration":%s,"generation":%s%s}\n' \
    "$(json_str "$c_message")" "$(json_str "$path")" "$(json_str "$action")" \
    "$(json_opt "$prev_system")" "$(json_num "$prev_gen")" "$(json_num "$prev_gen")" "$(took_over_json)"
  exit 14
}

# The activation ran past its timeout in phase $1.
timed_out() {
  t_limit="the activation timeout of ${activation_timeout}s"
  case $1 in
    realise) t_what="realising $path ran past $t_limit; stopped it" ;;
    secrets) t_what="installing the secrets ran past $t_limit; stopped it" ;;
    profile) t_what="setting the profile $profile ran past $t_limit; stopped it" ;;
    *) t_what="switch-to-configuration ran past $t_limit; stopped it"
      [ "$switch_started" = 1 ] || t_what="$t_limit ran out before switch-to-configuration" ;;
  esac
  finish_failed timed-out "$1" 10 "$t_what"
}

aborted() { [ -n "$token" ] && [ -e "$state_dir/abort-$token" ]; }

# INT or TERM ($1) during the activation: stop it and roll back.
interrupted() {
  trap '' INT TERM
  if aborted; then
    finish_failed failed "$l_phase" 6 "aborted by the deployer"
  fi
  finish_failed interrupted "$l_phase" 6 "interrupted by SIG$1"
}

# Step $1 failed (code $2, message $3): because of an abort, the timeout, or by itself.
step_failed() {
  aborted && finish_failed failed "$1" 6 "aborted by the deployer"
  [ "$1" = health ] || [ "$(remaining)" -gt 0 ] || timed_out "$1"
  fail "$@"
}

activated_json() {
  printf '"path":'; json_str "$path"
  printf ',"action":'; json_str "$action"
  printf ',"previous":'; json_opt "$prev_system"
  printf ',"previousGeneration":'; json_num "$prev_gen"
  printf ',"generation":'; json_num "$(current_generation)"
  took_over_json
  delta_json
  printf '}\n'
}

# The activation went through: report it, leaving a watcher to wait for the confirmation
# when $1 is "window" (unless an abort came first).
succeed() {
  trap '' INT TERM
  aborted && finish_failed failed "$l_phase" 6 "aborted by the deployer"
  if [ "$1" = window ]; then
    remove_file "$state_dir/result-$token"
    # The watcher records itself as the lock's holder; this process leaves once it has (5 s
    # at most): it sleeps until the watcher, recorded, ends that sleep (no polling), and looks.
    [ -d "$boot_dir" ] || mkdir -p "$boot_dir"
    now_set
    printf 'token=%s\npath=%s\nsince=%s\n' "$token" "$path" "$c_now" >"$window_file" ||
      log "could not record the window in $window_file: a boot during it goes unsaid"
    sleep 5 >/dev/null 2>&1 &
    s_waker=$!
    start_watcher "$s_waker"
    wait "$s_waker" 2>/dev/null
    i=0
    while [ "$(info_value kind "$state_dir/lock/info")" != window ] && [ "$i" -lt 10 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    if [ "$(info_value kind "$state_dir/lock/info")" != window ]; then
      # No watcher holds the window (systemd-run or setsid failed, or it did not start in 6 s):
      # nothing would roll back were the deployer gone. The host goes back now, this process
      # holding the lock still; a watcher that starts later finds the abort and ends as one.
      : >"$state_dir/abort-$token"
      remove_file "$state_dir/pending-$token"
      forget_window
      finish_failed failed health 6 "the confirmation watcher did not start, so nothing would roll the host back were the deployer gone"
    fi
    locked=0
    printf '{"ok":true,"command":"activate","result":"awaiting-confirmation","token":'
    json_str "$token"
    printf ',"confirmTimeout":%s,' "$confirm_timeout"
    activated_json
    exit 0
  fi
  # The system runs, healthy: no longer a failed one (boot and dry-activate change nothing now).
  case $action in switch | test) remove_file "$state_dir/failed" ;; esac
  unlock
  # Asked after (this answer lost on the way: a switch that restarted the network), the token
  # says how it ended, not that nothing began.
  [ -z "$token" ] || write_result "$token" activated "the activation had ended, activated, before it was asked: the host runs $path"
  printf '{"ok":true,"command":"activate","result":"activated",'
  activated_json
  exit 0
}

