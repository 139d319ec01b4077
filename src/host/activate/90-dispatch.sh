
[ $# -gt 0 ] || usage "expected a command: activate, after-boot, confirm-boot, abort-boot, confirm, abort, rollback, prune, check, restore-secrets, status or closure"
command=$1
shift
load_pinned_trust
case $command in
  activate) cmd_activate "$@" ;;
  after-boot) cmd_after_boot "$@" ;;
  confirm-boot) cmd_confirm_boot "$@" ;;
  abort-boot) cmd_abort_boot "$@" ;;
  confirm) cmd_settle confirm "$@" ;;
  abort) cmd_settle abort "$@" ;;
  rollback) cmd_rollback "$@" ;;
  prune) cmd_prune "$@" ;;
  check) cmd_check "$@" ;;
  restore-secrets) cmd_restore_secrets "$@" ;;
  status) cmd_status "$@" ;;
  closure) cmd_closure "$@" ;;
  *) usage "unknown command '$command'" ;;
esac
