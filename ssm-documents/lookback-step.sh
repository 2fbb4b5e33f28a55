# ---- Tapline look-back step -------------------------------------------------------------------
# Source: ssm-documents/lookback-step.sh (tested standalone by test/lab/lookback-*.test.ts; the
# capture document carries a copy that runs before its forward capture). Bash, no dollar-brace (the
# Serverless Framework would read it as a variable when the document is packaged).
#
# When SSM_LookbackSeconds > 0: freezes the standby ring (ssm-documents/tapline-standby.yml) at
# "now": asks its supervisor to rotate (tcpdump closes the current file on SIGINT and is restarted
# at once), picks the closed ring files whose [start, end] overlaps [now - LookbackSeconds, now]
# (start = the earlier of the name's epoch and the first packet's timestamp; end = mtime),
# copies them out of the ring so it cannot rotate them away, and uploads each, hashed, with SSE-KMS
# and the host hash as its S3 SHA-256 checksum, under the capture's key prefix with lookback=true
# and the file's real time range in its metadata.
#
# In (environment, as the SSM agent sets it): SSM_LookbackSeconds, SSM_RingDirectory (default
# /var/lib/tapline/ring), SSM_CaptureId, SSM_Bucket, SSM_KmsKeyId, SSM_Region, SSM_EndpointUrl,
# SSM_UploadAttempts, SSM_MinFreeMegabytes, SSM_WorkDir, AWS_SSM_INSTANCE_ID. tl_lb_run takes the
# instance ID and the AWS CLI v2 path as optional arguments (the capture script passes its own).
# Out (shell variables): LOOKBACK_JSON (one JSON object for the final report), LOOKBACK_FILES_JSON
# (comma-joined file entries in the capture report's "files" shape, lookback:true),
# LOOKBACK_UNSENT_JSON, LOOKBACK_FILE_COUNT, LOOKBACK_BYTES.
# It never exits the script and never prevents the forward capture: every problem is recorded in
# LOOKBACK_JSON's "errors". It writes only to stderr.
LOOKBACK_JSON='{"status":"not-requested"}'
LOOKBACK_FILES_JSON=""
LOOKBACK_UNSENT_JSON=""
LOOKBACK_FILE_COUNT=0
LOOKBACK_BYTES=0

tl_lb_esc() { printf '%s' "$1" | tr -cd '\040-\176' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
tl_lb_state() { sed -n "s/^$2=\([0-9A-Za-z_.-]*\)$/\1/p" "$1/state.env" 2>/dev/null | tail -n 1 || true; }
# tl_lb_is PID supervisor|tcpdump RING: alive, not a zombie, and the process we think it is.
tl_lb_is() {
  local pid=$1 cmd
  [[ $pid =~ ^[1-9][0-9]{0,9}$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo Z)" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  case $2 in
    supervisor) [[ $cmd == *"$3/supervisor.sh"* ]] ;;
    tcpdump) [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = tcpdump ] ;;
    *) return 1 ;;
  esac
}
# tl_lb_first_packet FILE: the first packet's timestamp from the pcap record header, or nothing.
tl_lb_first_packet() {
  local magic fields
  [ "$(stat -c %s -- "$1" 2>/dev/null || echo 0)" -ge 40 ] || return 0
  magic=$(od -An -t x4 -N 4 -- "$1" | tr -d ' ')
  fields=$(od -An -t u4 -j 24 -N 8 -- "$1" | tr -s ' ')
  case $magic in
    a1b2c3d4) printf '%s' "$fields" | awk '{ printf "%d.%06d", $1, $2 }' ;;
    a1b23c4d) printf '%s' "$fields" | awk '{ printf "%d.%06d", $1, int($2 / 1000) }' ;;
  esac
}

tl_lb_run() {
  local errors="" status ring_state=absent rotated=false now from seconds ring files
  local capture_id bucket kms region endpoint attempts min_free work_dir instance aws=""
  local spid tpid before after started i list closed_before name epoch suffix size start end
  local selected="" stage unsent_dir total_bytes free_mb method hex b64 key out attempt delay
  local cov_start="" cov_end="" prev_end="" gaps="" complete=false candidate
  tl_lb_err() {
    echo "tapline: look-back: $1" >&2
    if [ -n "$errors" ]; then errors="$errors,"; fi
    errors="$errors\"$(tl_lb_esc "$1")\""
  }
  tl_lb_done() {
    LOOKBACK_JSON=$(printf '{"status":"%s","requestedSeconds":%s,"windowStart":%s,"windowEnd":%s,"ringDirectory":"%s","ring":"%s","rotated":%s,"fileCount":%s,"bytes":%s,"coverageStart":%s,"coverageEnd":%s,"complete":%s,"gaps":[%s],"errors":[%s]}' \
      "$1" "$seconds" "$from" "$now" "$(tl_lb_esc "$ring")" "$ring_state" "$rotated" \
      "$LOOKBACK_FILE_COUNT" "$LOOKBACK_BYTES" "$(if [ -n "$cov_start" ]; then echo "$cov_start"; else echo null; fi)" \
      "$(if [ -n "$cov_end" ]; then echo "$cov_end"; else echo null; fi)" "$complete" "$gaps" "$errors")
    echo "tapline: look-back: $LOOKBACK_JSON" >&2
  }

  now=$(date +%s)
  seconds=$(printenv SSM_LookbackSeconds || echo 0)
  from=$now
  ring=$(printenv SSM_RingDirectory || echo /var/lib/tapline/ring)
  if ! [[ $seconds =~ ^[0-9]{1,5}$ ]]; then
    seconds=0
    tl_lb_err "LookbackSeconds does not match its allowed pattern"
    tl_lb_done failed
    return 0
  fi
  if [ "$seconds" -eq 0 ]; then return 0; fi
  from=$((now - seconds))
  if ! [[ $ring =~ ^/(var/lib|var/tmp|tmp|opt)/tapline[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$ ]]; then
    ring=""
    tl_lb_err "RingDirectory does not match its allowed pattern"
    tl_lb_done failed
    return 0
  fi
  capture_id=$(printenv SSM_CaptureId || true)
  bucket=$(printenv SSM_Bucket || true)
  kms=$(printenv SSM_KmsKeyId || true)
  region=$(printenv SSM_Region || true)
  endpoint=$(printenv SSM_EndpointUrl || true)
  attempts=$(printenv SSM_UploadAttempts || echo 5)
  min_free=$(printenv SSM_MinFreeMegabytes || echo 1024)
  work_dir=$(printenv SSM_WorkDir || echo /var/lib/tapline)
  instance=$1
  if [ -z "$instance" ]; then instance=$(printenv AWS_SSM_INSTANCE_ID || true); fi
  if ! [[ $capture_id =~ ^cap-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$ ]]; then tl_lb_err "CaptureId does not match its allowed pattern"; fi
  if ! [[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]]; then tl_lb_err "Bucket does not match its allowed pattern"; fi
  if ! [[ $kms =~ ^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$ ]]; then tl_lb_err "KmsKeyId does not match its allowed pattern"; fi
  if ! [[ $region =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then tl_lb_err "Region does not match its allowed pattern"; fi
  if ! [[ $endpoint =~ ^$|^http://127\.0\.0\.1:[1-9][0-9]{1,4}$|^https://[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?$ ]]; then tl_lb_err "EndpointUrl does not match its allowed pattern"; fi
  if ! [[ $attempts =~ ^[1-9]$ ]]; then tl_lb_err "UploadAttempts does not match its allowed pattern"; fi
  if ! [[ $min_free =~ ^[0-9]{1,7}$ ]]; then tl_lb_err "MinFreeMegabytes does not match its allowed pattern"; fi
  if ! [[ $work_dir =~ ^/(var/lib|var/tmp|tmp|opt)/tapline[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$ ]]; then tl_lb_err "WorkDir does not match its allowed pattern"; fi
  if ! [[ $instance =~ ^(i|mi)-[0-9a-f]{8,17}$ ]]; then tl_lb_err "cannot tell which instance this is"; fi
  if [ -n "$errors" ]; then
    tl_lb_done failed
    return 0
  fi
  files=$ring/files
  if [ ! -d "$files" ] || [ -L "$ring" ] || [ -L "$files" ] || [ "$(stat -c %u -- "$ring")" != 0 ]; then
    tl_lb_err "no standby ring in $ring; capturing forward only"
    tl_lb_done no-ring
    return 0
  fi

  # Freeze: ask the supervisor to rotate, so the file being written is closed and can be sent.
  spid=$(cat "$ring/supervisor.pid" 2>/dev/null || true)
  closed_before=""
  if tl_lb_is "$spid" supervisor "$ring"; then
    ring_state=running
    before=$(tl_lb_state "$ring" ROTATIONS)
    kill -USR1 "$spid" 2>/dev/null || true
    for i in $(seq 1 150); do
      after=$(tl_lb_state "$ring" ROTATIONS)
      if [ -n "$after" ] && [ "$after" != "$before" ]; then
        rotated=true
        break
      fi
      sleep 0.1
    done
    tpid=$(tl_lb_state "$ring" TCPDUMP_PID)
    started=$(tl_lb_state "$ring" TCPDUMP_STARTED)
    if [ "$rotated" = true ]; then
      # Every file named before the new tcpdump started is closed.
      if tl_lb_is "$tpid" tcpdump "$ring"; then closed_before=$started; fi
    else
      tl_lb_err "the ring did not rotate within 15 s; the file being written was left out"
      closed_before=open
    fi
  else
    ring_state=stopped
    tpid=$(tl_lb_state "$ring" TCPDUMP_PID)
    if tl_lb_is "$tpid" tcpdump "$ring"; then closed_before=open; fi
  fi

  list=$(ls -1 -- "$files" | sed -n 's/^ring-\([0-9]\{9,11\}\)\.pcap\([0-9]*\)$/\1 0\2 &/p' | sort -k1,1n -k2,2n || true)
  if [ "$closed_before" = open ]; then list=$(printf '%s\n' "$list" | sed '$d'); fi
  if [ -z "$list" ]; then
    tl_lb_err "the ring in $ring holds no closed files"
    tl_lb_done no-ring
    return 0
  fi
  # Select: [start, end] overlaps [from, now]. Header-only files hold no packets.
  while read -r epoch suffix name; do
    [ -n "$name" ] || continue
    if [[ $closed_before =~ ^[0-9]+$ ]] && [ "$epoch" -ge "$closed_before" ]; then continue; fi
    size=$(stat -c %s -- "$files/$name" 2>/dev/null || echo 0)
    if [ "$size" -le 24 ]; then continue; fi
    # Start: the earlier of the name's epoch (when tcpdump opened the file) and the first
    # packet's timestamp. tcpdump names a file when it writes the first packet after a rotation,
    # and the kernel hands packets over in blocks (up to its 1 s buffer timeout), so a file can
    # hold packets captured just before the second in its name.
    start=$(tl_lb_first_packet "$files/$name")
    if [ -z "$start" ] || awk -v a="$start" -v b="$epoch" 'BEGIN { exit !(a > b) }'; then start=$epoch; fi
    end=$(date -r "$files/$name" +%s.%6N 2>/dev/null || echo 0)
    if awk -v a="$start" -v n="$now" 'BEGIN { exit !(a <= n) }' && [ $(($(printf '%s' "$end" | cut -d . -f 1) + 1)) -ge "$from" ]; then
      selected="$selected$epoch $suffix $name $start $end
"
    fi
  done <<<"$list"
  if [ -z "$selected" ]; then
    tl_lb_err "no ring file covers the window (the ring's oldest file starts at $(printf '%s\n' "$list" | head -n 1 | cut -d ' ' -f 1))"
    tl_lb_done empty
    return 0
  fi

  # Copy out of the ring (a root-only staging directory on the same disk); hard-link instead when
  # a copy would take the disk below MinFreeMegabytes.
  stage=$ring/lookback/$capture_id
  unsent_dir=$work_dir/unsent/$capture_id
  (umask 077 && mkdir -p -- "$stage") || tl_lb_err "cannot create $stage"
  total_bytes=$(printf '%s' "$selected" | while read -r epoch suffix name start end; do stat -c %s -- "$files/$name" 2>/dev/null || echo 0; done | awk '{ s += $1 } END { print s + 0 }')
  free_mb=$(df -Pm -- "$ring" | awk 'NR == 2 { print $4 }')
  method=copy
  if [ $((free_mb - total_bytes / 1000000)) -lt "$min_free" ]; then method=link; fi
  while read -r epoch suffix name start end; do
    [ -n "$name" ] || continue
    if [ "$method" = copy ]; then
      cp --preserve=timestamps -- "$files/$name" "$stage/$name" 2>/dev/null || { rm -f -- "$stage/$name"; tl_lb_err "$name left the ring before it could be copied"; }
    else
      ln -- "$files/$name" "$stage/$name" 2>/dev/null || tl_lb_err "$name left the ring before it could be linked"
    fi
  done <<<"$selected"

  # The AWS CLI v2: the one the capture script already found (second argument), else the first
  # v2 on this host (a v1 earlier on PATH is skipped). Only looked for once there is a ring.
  aws=$2
  if [ -z "$aws" ]; then
    for candidate in /usr/local/bin/aws /usr/bin/aws "$(command -v aws || true)"; do
      if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version 2>&1 | grep -q '^aws-cli/2\.'; then
        aws=$candidate
        break
      fi
    done
  fi
  if [ -z "$aws" ]; then tl_lb_err "AWS CLI v2 is not installed; the look-back files stay on disk"; fi

  # Upload, oldest first; a copy is deleted only after its upload succeeded.
  while read -r epoch suffix name start end; do
    [ -n "$name" ] || continue
    [ -f "$stage/$name" ] || continue
    size=$(stat -c %s -- "$stage/$name")
    hex=$(sha256sum -- "$stage/$name" | cut -d ' ' -f 1)
    b64=$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64 -w 0)
    key="pcaps/$capture_id/$instance/lookback-$(date -u -d "@$epoch" +%Y%m%dT%H%M%SZ)-$suffix.pcap"
    attempt=1
    delay=1
    out=""
    while [ -n "$aws" ]; do
      if [ -n "$endpoint" ]; then set -- --endpoint-url "$endpoint"; else set --; fi
      if out=$("$aws" "$@" --region "$region" --cli-connect-timeout 10 s3api put-object \
        --bucket "$bucket" --key "$key" --body "$stage/$name" \
        --checksum-algorithm SHA256 --checksum-sha256 "$b64" \
        --server-side-encryption aws:kms --ssekms-key-id "$kms" \
        --metadata "sha256=$hex,capture-id=$capture_id,instance-id=$instance,time-start=$start,time-end=$end,lookback=true" \
        --query VersionId --output text 2>"$stage/upload.log"); then
        break
      fi
      out=""
      if [ "$attempt" -ge "$attempts" ]; then break; fi
      sleep "$delay"
      attempt=$((attempt + 1))
      delay=$((delay * 2))
    done
    if [ -n "$out" ]; then
      rm -f -- "$stage/$name"
      if [ -n "$LOOKBACK_FILES_JSON" ]; then LOOKBACK_FILES_JSON="$LOOKBACK_FILES_JSON,"; fi
      LOOKBACK_FILES_JSON="$LOOKBACK_FILES_JSON{\"key\":\"$key\",\"versionId\":\"$(tl_lb_esc "$out")\",\"size\":$size,\"sha256\":\"$hex\",\"s3ChecksumSha256\":\"$b64\",\"lookback\":true,\"start\":$start,\"end\":$end}"
      LOOKBACK_FILE_COUNT=$((LOOKBACK_FILE_COUNT + 1))
      LOOKBACK_BYTES=$((LOOKBACK_BYTES + size))
      if [ -z "$cov_start" ]; then cov_start=$start; fi
      if [ -n "$prev_end" ] && awk -v a="$prev_end" -v b="$start" 'BEGIN { exit !(b - a > 2) }'; then
        if [ -n "$gaps" ]; then gaps="$gaps,"; fi
        gaps="$gaps[$prev_end,$start]"
      fi
      prev_end=$end
      cov_end=$end
    else
      (umask 077 && mkdir -p -- "$unsent_dir") || true
      if mv -f -- "$stage/$name" "$unsent_dir/$(basename -- "$key")" 2>/dev/null; then
        if [ -n "$LOOKBACK_UNSENT_JSON" ]; then LOOKBACK_UNSENT_JSON="$LOOKBACK_UNSENT_JSON,"; fi
        LOOKBACK_UNSENT_JSON="$LOOKBACK_UNSENT_JSON{\"path\":\"$unsent_dir/$(basename -- "$key")\",\"key\":\"$key\",\"size\":$size,\"sha256\":\"$hex\",\"lookback\":true}"
      fi
      if [ -n "$aws" ]; then
        tl_lb_err "upload of $key failed after $attempts attempts ($(tail -n 1 "$stage/upload.log" 2>/dev/null || true)); kept in $unsent_dir"
      fi
    fi
  done <<<"$selected"
  rm -f -- "$stage/upload.log"
  rmdir -- "$stage" "$ring/lookback" 2>/dev/null || true

  if [ -n "$cov_start" ] && awk -v a="$cov_start" -v b="$from" 'BEGIN { exit !(a <= b) }' && [ -z "$gaps" ]; then complete=true; fi
  if [ "$LOOKBACK_FILE_COUNT" -eq 0 ]; then
    status=failed
  elif [ -n "$errors" ]; then
    status=partial
  else
    status=ok
  fi
  tl_lb_done "$status"
  return 0
}

if [[ $(printenv SSM_LookbackSeconds || echo 0) =~ ^0*[1-9][0-9]*$ ]]; then
  tl_lb_run "$(printenv AWS_SSM_INSTANCE_ID || true)" "" || LOOKBACK_JSON='{"status":"failed","errors":["the look-back step failed unexpectedly"]}'
fi
# ---- end of the look-back step ----------------------------------------------------------------
