# --- Reboots (deploy --reboot): `activate --action boot --reboot-token T` records the pending
# boot and reboots (`--boot-token T` records it alone: deploy --action boot, a reboot left to
# later); after the boot, `after-boot` checks what booted and runs the health checks, then
# `confirm-boot` keeps it or `abort-boot` goes back. The pending boot outlives /run in
# boot_file, on the disk: the token, the system to boot, its generation, the generation before
# it with that generation's system, and the boot it was recorded in (another one booted since).

# This boot's identity: the kernel's boot id and the time /run/booted-system was made (a reboot
# makes both anew; the lab gives each boot of a host a boot id of its own).
# boot_id prints it; boot_id_set sets i_out to it.
boot_id_set() {
  i_out=""
  { IFS= read -r i_out; } 2>/dev/null </proc/sys/kernel/random/boot_id || true
  i_out="$i_out/$(stat -c %Z /run/booted-system 2>/dev/null)" || true
}
boot_id() { boot_id_set; printf '%s' "$i_out"; }

# What systemd-bless-boot says of this boot: good, bad, indeterminate (counted, not yet
# judged) or clean (not counted); empty where the system has none. boot_assessment prints
# it; boot_assessment_set sets a_out to it (its first line, cut by the shell).
boot_assessment_set() {
  a_out=""
  [ -x "$BLESS" ] || return 0
  a_out=$("$BLESS" status 2>/dev/null) || true
  a_out=${a_out%%"
"*}
}
boot_assessment() { boot_assessment_set; printf '%s' "$a_out"; }

# Marks a counted boot $1 (good or bad), so that the boot loader keeps or skips its entry.
bless() {
  case $(boot_assessment) in
    indeterminate | good | bad) "$BLESS" "$1" >&2 || log "systemd-bless-boot $1 failed" ;;
  esac
}

# Reboots 2 s from now, detached, so that the caller has its answer first. Only the running
# system's systemctl, never one from PATH.
schedule_reboot() {
  [ -x "$SYSTEMCTL" ] || return 1
  setsid sh -c "sleep 2; exec $SYSTEMCTL reboot" </dev/null >/dev/null 2>&1 &
}

# The pending boot into p_* (p_token empty: none). Known keys only, never evaluated.
read_boot() {
  p_token="" p_path="" p_generation="" p_prev_gen="" p_prev_system="" p_since="" p_boot=""
  [ -f "$boot_file" ] || return 0
  while IFS= read -r line; do
    case ${line%%=*} in
      token | path | generation | prev_gen | prev_system | since | boot) eval "p_${line%%=*}=\${line#*=}" ;;
    esac
  done <"$boot_file"
  for v in generation prev_gen since; do eval "digits \"\$p_$v\" || p_$v=''"; done
}

# The boot activation went through: record the pending boot under $boot_token, for the verbs
# that judge it once the host booted it (fails in phase $1).
write_boot() {
  b_prev=""
  [ -z "$prev_gen" ] || b_prev=$(generation_path "$prev_gen")
  { mkdir -p "$boot_dir" &&
    printf 'token=%s\npath=%s\ngeneration=%s\nprev_gen=%s\nprev_system=%s\nsince=%s\nboot=%s\n' \
      "$boot_token" "$path" "$(current_generation)" "$prev_gen" "$b_prev" "$(now)" "$(boot_id)" \
      >"$boot_file.tmp" && mv -f "$boot_file.tmp" "$boot_file"; } ||
    fail "$1" 4 "cannot record the pending boot in $boot_file"
}

# A boot activation without a reboot (--boot-token): the new system is what the host boots
# next, and its boot is pending until after-boot, confirm-boot or abort-boot judge it (or an
# activation replaces it).
record_boot() {
  write_boot switch
  log "generation $(current_generation) ($path) boots next: pending until the host has booted it and its boot is judged"
}

# The boot activation went through: record the pending boot, reboot, and say so.
begin_reboot() {
  l_phase=reboot
  mark_phase reboot
  [ "$caller_reboots" = 1 ] || [ -x "$SYSTEMCTL" ] ||
    fail reboot 4 "cannot reboot: $SYSTEMCTL is missing"
  write_boot reboot
  if [ "$caller_reboots" = 0 ]; then
    schedule_reboot || { rm -f "$boot_file"; fail reboot 4 "cannot reboot: $SYSTEMCTL failed"; }
  fi
  log "rebooting into generation $(current_generation) ($path)"
  trap '' INT TERM
  unlock
  printf '{"ok":true,"command":"activate","result":"rebooting","bootId":%s,' "$(json_str "$(boot_id)")"
  activated_json
  exit 0
}

# What a reboot would change, as NixOS's own switch-to-configuration judges it: the booted
# system's kernel, initrd and kernel modules against the current system's (a switch loads none
# of them). JSON: due, which of them differ, since when the current system runs (the mtime of
# /run/current-system, Unix seconds), and the booted ones' targets (for the deployer's plan);
# null without a booted or a current system.
reboot_json() {
  resolve_set /run/booted-system || true
  b_sys=$r_out
  resolve_set /run/current-system || true
  c_sys=$r_out
  if [ -z "$b_sys" ] || [ -z "$c_sys" ]; then
    printf 'null'
    return 0
  fi
  b_changed="" b_parts=""
  for b_part in kernel initrd kernel-modules; do
    resolve_set "$b_sys/$b_part" || true
    b_was=$r_out
    resolve_set "$c_sys/$b_part" || true
    [ "$b_was" = "$r_out" ] || b_changed="$b_changed${b_changed:+,}\"$b_part\""
    json_opt_set "$b_was"
    b_parts="$b_parts${b_parts:+,}\"$b_part\":$j_out"
  done
  b_due=false
  [ -z "$b_changed" ] || b_due=true
  b_since=$(stat -c %Y /run/current-system 2>/dev/null) || true
  digits "$b_since" || b_since=null
  printf '{"due":%s,"changed":[%s],"since":%s,"booted":{%s}}' "$b_due" "$b_changed" \
    "$b_since" "$b_parts"
}

