# The generation number a profile link points at (system-12-link -> 12), or empty.
generation_of() {
  link=$(readlink "$1" 2>/dev/null) || return 0
  printf '%s' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
}

current_generation() { generation_of "$profile"; }

# The system of generation $1 of the profile.
generation_path() { resolve "$profile-$1-link"; }

# The profile's generation numbers, in ascending order, one per line.
generations() {
  for link in "$profile"-*-link; do
    [ -L "$link" ] && printf '%s\n' "$link" | sed -n 's/^.*-\([0-9][0-9]*\)-link$/\1/p'
  done | sort -n
}

# The highest generation number the profile ever had: the one recorded (new_generation) or the
# highest it has, whichever is higher (a number of more than 15 digits is not taken).
highest_generation() {
  h_rec=$(head -c 32 "$(generation_record)" 2>/dev/null | head -n 1)
  { digits "$h_rec" && [ ${#h_rec} -le 15 ]; } || h_rec=0
  h_rec=$(decimal "$h_rec")
  h_last=$(generations | awk 'length($1) <= 15 { n = $1 } END { printf "%s", n }')
  [ -z "$h_last" ] || [ "$h_last" -le "$h_rec" ] || h_rec=$h_last
  printf '%s' "${h_rec:-0}"
}

# The file that records the highest generation number of the profile.
generation_record() {
  printf '%s/%s' "$generations_dir" "$(printf '%s' "$profile" | tr -c 'A-Za-z0-9._-' '_')"
}

# Step 3: the profile on a new generation holding system $1, within $2 seconds. Its number is
# one past the highest the profile ever had, recorded on the disk before its link is made: Nix
# numbers a generation one past the highest that exists, so once the generation of a failed
# activation is removed its number would come again, and "generation N" would name two
# systems. The link is made as `nix-env --set` makes it (nix-store --add-root: atomically, a GC
# root registered while the collector may run), then nix-env switches the profile to it under
# Nix's profile lock. A profile already on $1 stays as it is.
new_generation() {
  n_now=$(current_generation)
  if [ -n "$n_now" ] && [ "$(readlink "$profile-$n_now-link" 2>/dev/null)" = "$1" ]; then
    log "the profile $profile is on $1 already (generation $n_now)"
    return 0
  fi
  n_gen=$(($(highest_generation) + 1))
  n_rec=$(generation_record)
  if ! { mkdir -p "$generations_dir" && printf '%s\n' "$n_gen" >"$n_rec.tmp" &&
    mv -f "$n_rec.tmp" "$n_rec"; }; then
    log "cannot record generation $n_gen of $profile in $n_rec"
    return 1
  fi
  # In the lock's record before the link exists: a takeover removes it unless the profile is on
  # it (restore_previous).
  l_new_gen=$n_gen
  write_info
  n_start=$(now)
  bounded log "$2" nix-store --realise "$1" --add-root "$profile-$n_gen-link" || {
    forget_generation "$n_gen"
    return 1
  }
  n_left=$(($2 - ($(now) - n_start)))
  if [ "$n_left" -gt 0 ] && bounded log "$n_left" nix-env -p "$profile" --switch-generation "$n_gen"; then
    log "generation $n_gen of $profile: $1"
    return 0
  fi
  # The profile is not on it: no rollback or boot menu may take it for a good system.
  forget_generation "$n_gen"
  return 1
}

# The highest generation below $1.
previous_generation() { generations | awk -v below="$1" '$1 < below { best = $1 } END { printf "%s", best }'; }

have_systemd() { [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; }

