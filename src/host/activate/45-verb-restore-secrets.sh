# restore-secrets [--system PATH]: installs again the secrets of the last bundle installed,
# kept on the disk (save_secrets), when those installed are not its: after a boot, whose /run
# is empty. Run at boot before services start (nixosModules.host adds it to the system's
# activation; the lab's boot runs it before the system's init), with the system booting as
# --system (default: the one running). Nothing to do: reports "unchanged", taking no lock. A
# pinned host installs only secrets that system declares.
cmd_restore_secrets() {
  r_system=""
  while [ $# -gt 0 ]; do
    case $1 in
      --system) r_system=${2-}; shift 2 ;;
      *) usage "restore-secrets: unknown option '$1'" ;;
    esac
  done
  [ -z "$r_system" ] || store_path_form "$r_system" ||
    usage "restore-secrets: --system must be a store path in canonical form (/nix/store/HASH-NAME, nothing before or after), got '$r_system'"
  mkdir -p "$state_dir"
  if [ ! -f "$saved_secrets" ] || saved_secrets_installed; then
    printf '{"ok":true,"command":"restore-secrets","result":"unchanged"}\n'
    return 0
  fi
  outcome_command=restore-secrets
  path=${r_system:-$(resolve /run/current-system || true)}
  action=restore-secrets
  secrets_file=$saved_secrets
  age_path=$(head -n 1 "$saved_age" 2>/dev/null || true)
  [ -z "$age_path" ] || store_path_form "$age_path" || age_path=""
  host_key=/etc/ssh/ssh_host_ed25519_key
  # The age package is in the store since its bundle was installed: no substituter is asked,
  # but under pinned trust its signature is checked again.
  subs="" keys=""
  [ "$pinned" = 0 ] || subs=$pinned_subs keys=$pinned_keys
  clock_base
  now_set
  deadline=$((c_now + 4 * SECRETS_TIMEOUT))
  l_kind=restore-secrets l_command=restore-secrets l_path=$path l_since=$c_now
  l_deadline=$((deadline + SETTLE_TIME)) l_phase=secrets
  lock
  trap 'interrupted INT' INT
  trap 'interrupted TERM' TERM
  install_secrets
  unlock
  printf '{"ok":true,"command":"restore-secrets","result":"restored","secrets":%s}\n' "$s_count"
}
