# --token T and the check options of after-boot and abort-boot; takes the pending boot and the
# lock for verb $1.
boot_verb_args() {
  verb=$1 token="" health_cmds="" health_timeout=30 rollback_reboot=0
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --token) token=${2-}; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --health-cmd | --health-once | --health-timeout) health_option "$1" "${2-}"; shift 2 ;;
      --reboot-rollback) rollback_reboot=1; shift ;;
      *) usage "$verb: unknown option '$1'" ;;
    esac
  done
  case $token in ''|*[!A-Za-z0-9_-]*) usage "$verb: --token is required" ;; esac
  check_health_timeouts "$verb"
  mkdir -p "$state_dir"
  read_boot
  if [ "$p_token" != "$token" ]; then
    printf '{"ok":false,"command":"%s","result":"unknown-token","exitCode":9,"message":%s}\n' \
      "$verb" "$(json_str "no reboot is pending for token $token")"
    exit 9
  fi
  checks_seconds=$(checks_time)
  l_kind=$verb l_command="$verb --token $token" l_path=$p_path l_since=$(now) l_phase=health
  l_deadline=$((l_since + checks_seconds + SETTLE_TIME))
  lock
  prev_gen=$p_prev_gen
}

boot_json() {
  printf '"booted":%s,"bootId":%s,"generation":%s}\n' \
    "$(json_opt "$(resolve /run/booted-system || true)")" "$(json_str "$(boot_id)")" \
    "$(json_num "$(current_generation)")"
}

# The rebooted system is not kept (phase $1, exit code $2, message $3): the profile back on the
# generation before it (the boot loader's default again, its entry installed by that system's
# switch-to-configuration boot), the new generation dropped; a boot of the new system marked
# bad and, with --reboot-rollback, the host rebooted into the previous one.
undo_boot() {
  u_phase=$1 code=$2 message=$3 u_reboot=false outcome=rolled-back rolled=true
  # A failed check's work directory (its last output) goes, as every other verb's does.
  [ -z "$h_dir" ] || rm -rf "$h_dir"
  u_booted=$(resolve /run/booted-system || true)
  mark_phase rollback
  log "$message; rolling back to generation ${p_prev_gen:-?}"
  if [ -z "$p_prev_gen" ] || [ -z "$p_prev_system" ]; then
    outcome=rollback-failed rolled=false code=7
    message="$message; no earlier system to go back to: the host runs $u_booted, marked failed until an activation succeeds"
    mark_failed "$u_booted" "$message"
  else
    r_why=""
    if [ "$(current_generation)" != "$p_prev_gen" ]; then
      if profile_env --switch-generation "$p_prev_gen" >&2; then
        forget_generation "$p_generation"
      else
        r_status=$? rolled=false
        r_why="nix-env --switch-generation $p_prev_gen $(how_it_ended "$r_status" "$PROFILE_TIMEOUT")"
      fi
    fi
    if run_switch "$p_prev_system" boot "$ROLLBACK_TIMEOUT" rollback; then :; else
      r_status=$? rolled=false
      r_why="${r_why:+$r_why, }switch-to-configuration boot $(how_it_ended "$r_status" "$ROLLBACK_TIMEOUT")"
    fi
    if [ "$rolled" = false ]; then
      outcome=rollback-failed code=7 message="$message; the rollback failed too ($r_why)"
    fi
  fi
  if [ "$u_booted" = "$p_path" ]; then
    bless bad
    if [ "$rolled" = true ] && [ "$rollback_reboot" = 1 ]; then
      if schedule_reboot; then
        u_reboot=true
        log "rebooting into generation $p_prev_gen ($p_prev_system)"
      else
        message="$message; cannot reboot into it: $SYSTEMCTL is missing"
      fi
    fi
  else
    # The host booted another system (its boot loader fell back): that boot went well.
    bless good
  fi
  rm -f "$boot_file"
  unlock
  printf '{"ok":false,"command":"%s","result":%s,"phase":%s,"exitCode":%s,"message":%s,"rolledBack":%s,"rebooting":%s,' \
    "$verb" "$(json_str "$outcome")" "$(json_str "$u_phase")" "$code" "$(json_str "$message")" \
    "$rolled" "$u_reboot"
  boot_json
  exit "$code"
}

# after-boot --token T [checks]: the host came back; is it on the system it rebooted for?
# Then its command checks. Reports "booted" (and keeps the pending boot for confirm-boot), or
# goes back (undo_boot).
cmd_after_boot() {
  boot_verb_args after-boot "$@"
  # Still the boot the pending one was recorded in: nothing booted it yet, nothing to judge.
  if [ -n "$p_boot" ] && [ "$p_boot" = "$(boot_id)" ]; then
    unlock
    printf '{"ok":false,"command":"after-boot","result":"not-rebooted","exitCode":9,"message":%s}\n' \
      "$(json_str "the host has not rebooted since generation ${p_generation:-?} ($p_path) was set to boot next: nothing to judge yet")"
    exit 9
  fi
  booted=$(resolve /run/booted-system || true)
  if [ "$booted" != "$p_path" ]; then
    undo_boot reboot 4 "the host came back on ${booted:-no system} instead of $p_path: that system did not boot (the boot loader fell back)"
  fi
  mark_phase health
  run_health_checks "$p_path" || undo_boot health 5 "$h_message"
  unlock
  printf '{"ok":true,"command":"after-boot","result":"booted","assessment":%s,' \
    "$(json_opt "$(boot_assessment)")"
  boot_json
  exit 0
}

# confirm-boot --token T: keeps the rebooted system (its boot marked good where counted).
cmd_confirm_boot() {
  boot_verb_args confirm-boot "$@"
  bless good
  rm -f "$boot_file" "$state_dir/failed"
  unlock
  printf '{"ok":true,"command":"confirm-boot","result":"confirmed",'
  boot_json
  exit 0
}

# abort-boot --token T [--reboot-rollback]: the deployer's checks failed after the boot.
cmd_abort_boot() {
  boot_verb_args abort-boot "$@"
  undo_boot confirm 6 "aborted by the deployer"
}

