cmd_activate() {
  path="" action=switch subs="" keys="" health_timeout=30 confirm_timeout=0 token=""
  health_cmds="" activation_timeout=600
  secrets=0 age_path="" delta_tool="" expect_current="" host_key="" secrets_url="" secrets_sha256="" reboot_token="" boot_token="" caller_reboots=0
  while [ $# -gt 0 ]; do
    case $1 in
      --path) path=${2-}; shift 2 ;;
      --action) action=${2-}; shift 2 ;;
      --substituter) subs="$subs${subs:+ }${2-}"; shift 2 ;;
      --trusted-key) keys="$keys${keys:+ }${2-}"; shift 2 ;;
      --profile) refuse_when_pinned --profile "the system profile is the only one"; profile=${2-}; shift 2 ;;
      --health-cmd | --health-once | --health-timeout) health_option "$1" "${2-}"; shift 2 ;;
      --activation-timeout) activation_timeout=${2-}; shift 2 ;;
      --confirm-timeout) confirm_timeout=${2-}; shift 2 ;;
      --token) token=${2-}; shift 2 ;;
      --secrets) secrets=1; shift ;;
      --age) age_path=${2-}; shift 2 ;;
      --delta-tool) delta_tool=${2-}; shift 2 ;;
      --expect-current) expect_current=${2-}; shift 2 ;;
      --host-key) host_key=${2-}; shift 2 ;;
      --secrets-url) secrets_url=${2-}; shift 2 ;;
      --secrets-sha256) secrets_sha256=${2-}; shift 2 ;;
      --reboot-token) reboot_token=${2-}; shift 2 ;;
      --boot-token) boot_token=${2-}; shift 2 ;;
      --caller-reboots) caller_reboots=1; shift ;;
      *) usage "activate: unknown option '$1'" ;;
    esac
  done
  store_path_form "$path" ||
    usage "activate: --path must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$path'"
  case $action in switch|boot|test|dry-activate) ;; *) usage "activate: unknown action '$action'" ;; esac
  case $confirm_timeout in ''|*[!0-9]*) usage "activate: --confirm-timeout must be whole seconds" ;; esac
  check_activation_timeout activate
  check_health_timeouts activate
  decimal_set "$confirm_timeout"
  confirm_timeout=$d
  if [ "$confirm_timeout" -gt 0 ]; then
    case $token in ''|*[!A-Za-z0-9_-]*) usage "activate: --confirm-timeout needs a --token of letters, digits, '-' or '_'" ;; esac
  fi
  case $token in *[!A-Za-z0-9_-]*) usage "activate: --token must be letters, digits, '-' or '_'" ;; esac
  case $reboot_token in *[!A-Za-z0-9_-]*) usage "activate: --reboot-token must be letters, digits, '-' or '_'" ;; esac
  case $boot_token in *[!A-Za-z0-9_-]*) usage "activate: --boot-token must be letters, digits, '-' or '_'" ;; esac
  [ -z "$reboot_token" ] || [ "$action" = boot ] || usage "activate: --reboot-token needs --action boot"
  [ -z "$boot_token" ] || [ "$action" = boot ] || usage "activate: --boot-token needs --action boot"
  [ -z "$reboot_token" ] || [ -z "$boot_token" ] || [ "$boot_token" = "$reboot_token" ] ||
    usage "activate: --boot-token and --reboot-token name one pending boot: give one of them"
  # A reboot's pending boot is recorded under its token.
  [ -z "$reboot_token" ] || boot_token=$reboot_token
  check_secrets_options
  [ -z "$delta_tool" ] || store_path_form "$delta_tool" ||
    usage "activate: --delta-tool must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$delta_tool'"
  [ -z "$expect_current" ] || store_path_form "$expect_current" ||
    usage "activate: --expect-current must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$expect_current'"
  if [ "$pinned" = 1 ]; then
    [ -z "$subs$keys" ] || [ "$subs $keys" = "$pinned_subs $pinned_keys" ] ||
      log "trust is pinned by $NIXSHIP_TRUST_FILE: the --substituter and --trusted-key given are ignored"
    subs=$pinned_subs keys=$pinned_keys
  fi
  clock_base
  now_set
  started=$c_now
  deadline=$((started + activation_timeout))
  checks_seconds=$(checks_time)
  profile_set=0 switch_started=0 prev_gen="" prev_system=""
  # The lock's deadline: the activation's, its health checks, and a rollback after them.
  l_kind=activate l_command="activate $path" l_path=$path l_action=$action l_token=$token
  l_since=$started l_deadline=$((deadline + checks_seconds + SETTLE_TIME)) l_phase=realise
  # Recorded below, with the generation and system it would go back to.
  lock unrecorded
  trap 'interrupted INT' INT
  trap 'interrupted TERM' TERM
  prev_gen=$(current_generation)
  resolve_set /run/current-system || true
  prev_system=$r_out
  l_prev_gen=$prev_gen l_prev_system=$prev_system
  # Under the lock, before anything changes: the host must still run what the caller expects.
  # After a takeover went back from a stale holder's switch, a caller that saw the host mid-way
  # (on the holder's new system) expected that one.
  [ -z "$expect_current" ] || [ "$prev_system" = "$expect_current" ] ||
    { [ -n "$took_over" ] && [ "$expect_current" = "$took_over_from" ]; } || changed_since
  [ -z "$token" ] || remove_file "$state_dir/result-$token"
  write_info
  # An abort came before this activation began (cmd_settle cancels its token): nothing changes.
  # Read after the lock's record names the token, so an abort after this point finds it.
  if aborted; then finish_failed failed realise 6 "aborted by the deployer before it began"; fi
  sweep_outcomes
  # An activation decides the host's state anew: a reboot left unconfirmed is over, and so is a
  # window a boot cut.
  remove_file "$boot_file"
  forget_window

  # 1. Realise (bounded by what is left of the activation timeout).
  # The root keeps the new system from the garbage collector until a profile or
  # /run/current-system holds it (test and dry-activate set no profile).
  # With --delta-tool, what deltas can rebuild first, into a local cache the realise asks first.
  delta_step
  realise_path "$path" "" realise 3 "$state_dir/realised" "$x_cache"
  delta_finish
  store_path_resolves "$path" ||
    step_failed realise 3 "$path is a link or resolves elsewhere ($(resolve "$path" || echo nowhere)): only a store path that is itself is activated"
  require_pinned_signature "$path" "" realise 3
  if unpins "$path"; then step_failed realise 2 "$p_why"; fi
  if u_bad=$(undeclared_check "$path"); then
    step_failed realise 2 "the command check '$u_bad' is not one $path declares in nixship/health-commands: this host's trust is pinned, and only its system's own commands run as root"
  fi

  # 2. Secrets. A dry-activate changes nothing: the secrets the running system uses stay.
  if [ "$secrets" = 1 ] && [ "$action" = dry-activate ]; then
    log "dry-activate: the secrets are left as they are"
  elif [ "$secrets" = 1 ]; then
    install_secrets
  fi

  # 3. Profile.
  if [ "$action" = switch ] || [ "$action" = boot ]; then
    [ -d "${profile%/*}" ] || mkdir -p "$(dirname "$profile")"
    remaining_set
    [ "$r" -gt 0 ] || timed_out profile
    l_phase=profile profile_set=1
    mark_phase profile
    new_generation "$path" "$r" ||
      step_failed profile 4 "cannot set the profile $profile to $path"
  fi

  # 4. Switch.
  remaining_set
  [ "$r" -gt 0 ] || timed_out switch
  l_phase=switch switch_started=1
  mark_phase switch
  log "switch-to-configuration $action ($path)"
  run_switch "$path" "$action" "$r" switch
  status=$?
  [ "$status" -eq 0 ] || step_failed switch 4 "switch-to-configuration $action exited with $status"
  [ -z "$reboot_token" ] || begin_reboot
  [ -z "$boot_token" ] || record_boot
  if [ "$action" = boot ] || [ "$action" = dry-activate ]; then succeed now; fi

  # 5. Health. Recorded with the first command check's run (bounded): to a takeover, health
  # means what switch does, and the switch's process group recorded meanwhile is gone.
  l_phase=health
  mark_phase health
  run_health_checks "$path" || step_failed health 5 "$h_message"

  # 6. Confirmation window (magic rollback).
  if [ "$confirm_timeout" -gt 0 ]; then succeed window; fi
  succeed now
}

