# Waits (at most SETTLE_TIME seconds) for the outcome of $token; a holder that dies
# meanwhile is taken over, which settles it.
settle_wait() {
  i=0
  # A watcher woken writes its outcome within milliseconds: looked for soon, twice, before the
  # tenths of a second the bound counts (each wait is a confirmation's, and a wave's, latency).
  [ ! -e "$state_dir/result-$token" ] || return 0
  sleep 0.01
  [ ! -e "$state_dir/result-$token" ] || return 0
  sleep 0.03
  while [ ! -e "$state_dir/result-$token" ] && [ "$i" -lt $((SETTLE_TIME * 10)) ]; do
    if [ $((i % 10)) = 9 ]; then
      clear_stale "$verb" "$verb --token $token"
      # Nothing left to report: the activation went through before the abort reached it.
      if [ ! -d "$state_dir/lock" ] && [ ! -e "$state_dir/pending-$token" ] &&
        [ ! -e "$state_dir/result-$token" ]; then
        sleep 0.5 # (an outcome is written just after the lock goes)
        break
      fi
    fi
    sleep 0.1
    i=$((i + 1))
  done
}

# confirm or abort: signal the watcher (or stop the activation still under way), then wait
# (bounded) for its outcome. An abort that comes before its activation began (a deployer
# interrupted while its command was on the way) cancels the token: that activation, should it
# come, ends at once with nothing changed (see cmd_activate). The cancel is written before the
# lock is read, so an activation either is seen here or sees it. --keep-token leaves the token
# usable, for a caller that will activate under it again (its first command has ended).
cmd_settle() {
  verb=$1 token="" keep_token=0
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --token) token=${2-}; shift 2 ;;
      --keep-token) [ "$verb" = abort ] || usage "$verb: unknown option '$1'"; keep_token=1; shift ;;
      *) usage "$verb: unknown option '$1'" ;;
    esac
  done
  case $token in ''|*[!A-Za-z0-9_-]*) usage "$verb: --token is required" ;; esac
  [ -d "$state_dir" ] || mkdir -p "$state_dir"
  [ "$verb" != abort ] || [ "$keep_token" = 1 ] || [ -e "$state_dir/result-$token" ] ||
    : >"$state_dir/abort-$token"
  clear_stale "$verb" "$verb --token $token"
  settled="" stopped_in="" i=0
  if [ "$verb" = abort ] && [ -d "$state_dir/lock" ]; then
    # A takeover under way (bounded) comes first: it settles its holder, then its taker runs.
    judge_lock
    while [ "$o_kind" = takeover ] && [ "$o_alive" = 1 ] && [ "$i" -lt "$SETTLE_TIME" ]; do
      sleep 1
      i=$((i + 1))
      judge_lock
    done
    if [ "$o_kind" = activate ] && [ "$o_token" = "$token" ] && [ -n "$o_pid" ] &&
      proc_alive "$o_pid" "$o_start"; then
      # The activation is still under way: it stops what runs and rolls back. The phase it is
      # stopped in is the one read now: settle_wait reads the lock again (o_phase), by then the
      # activation's own rollback.
      stopped_in=${o_phase:-realise}
      : >"$state_dir/abort-$token"
      log "stopping the activation of ${o_path:-?} (pid $o_pid, in its ${o_phase:-first} phase)"
      kill -s TERM "$o_pid" 2>/dev/null
      settle_wait
      settled=1
    fi
  fi
  if [ -z "$settled" ]; then
    if [ ! -e "$state_dir/pending-$token" ] && [ ! -e "$state_dir/result-$token" ]; then
      u_message="no activation is waiting for token $token"
      [ "$verb" != abort ] || [ "$keep_token" = 1 ] ||
        u_message="$u_message; none will begin under it now"
      printf '{"ok":false,"command":"%s","result":"unknown-token","exitCode":9,"message":%s%s}\n' \
        "$verb" "$(json_str "$u_message")" "$(took_over_json)"
      exit 9
    fi
    if [ ! -e "$state_dir/result-$token" ]; then
      if [ "$verb" = confirm ]; then : >"$state_dir/confirmed-$token"; else : >"$state_dir/abort-$token"; fi
      # Wake the watcher (see watcher_script).
      sleeper=""
      { IFS= read -r sleeper; } 2>/dev/null <"$state_dir/sleeper-$token" || true
      [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
      settle_wait
    fi
  fi
  outcome="" reason=""
  { IFS= read -r outcome && IFS= read -r reason; } 2>/dev/null <"$state_dir/result-$token" || true
  # Its activation ended: a cancel is no longer needed.
  [ -z "$outcome" ] || [ "$verb" != abort ] || remove_file "$state_dir/abort-$token"
  case $outcome in
    confirmed) code=0 ok=true ;;
    rolled-back) code=6 ok=false; [ "$verb" = abort ] && code=0 && ok=true ;;
    rollback-failed) code=7 ok=false ;;
    # An activation with no window, ended well: nothing waits for a word, nothing is undone.
    activated) code=6 ok=false; [ "$verb" = confirm ] && code=0 && ok=true ;;
    *) code=7 ok=false outcome=unknown
      reason="no outcome for token $token within ${SETTLE_TIME}s"
      [ -d "$state_dir/lock" ] || [ -e "$state_dir/pending-$token" ] ||
        reason="the activation with token $token ended before the $verb reached it" ;;
  esac
  printf '{"ok":%s,"command":"%s","result":' "$ok" "$verb"
  json_str "$outcome"
  printf ',"exitCode":%s,"message":' "$code"
  json_str "$reason"
  printf ',"generation":'
  json_num "$(current_generation)"
  printf ',"current":'
  resolve_set /run/current-system || r_out=""
  json_opt "$r_out"
  if [ -n "$stopped_in" ]; then
    printf ',"stoppedIn":'
    json_str "$stopped_in"
  fi
  took_over_json
  printf '}\n'
  exit "$code"
}

