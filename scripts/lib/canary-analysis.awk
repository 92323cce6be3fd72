# Compares a canary with its stable release from the gateways' Prometheus metrics (the text of GET /metrics
# of every pod of each release). Called by deploy.sh before a rollout grows a canary and before promote:
#
#   awk -v max_increase=POINTS -v min_messages=N -f canary-analysis.awk \
#     release=stable STABLE_METRICS_FILE... release=canary CANARY_METRICS_FILE...
#
# Sums smtp_gateway_messages_total by outcome per release (docs/metrics.md). A message counts once it got a
# final answer: relayed (250), rejected (5xx: refused) or deferred (4xx); aborted ones (the client left) do
# not. Prints each release's figures, then the verdict, and exits:
#   0  the canary defers and refuses no more than the stable release plus max_increase percentage points;
#   1  it does worse on either ratio;
#   2  a release answered fewer than min_messages messages: too little traffic to compare;
#   3  the input holds no smtp_gateway_messages_total series: not the gateway's metrics.

function outcome_of(line) {
  if (!match(line, /outcome="[^"]*"/)) return ""
  return substr(line, RSTART + 9, RLENGTH - 10)
}

function percent(part, whole) { return whole > 0 ? 100 * part / whole : 0 }

BEGIN {
  if (max_increase == "" || max_increase !~ /^[0-9]+(\.[0-9]+)?$/) {
    print "canary-analysis: max_increase must be a number of percentage points, got '" max_increase "'" > "/dev/stderr"
    exit_code = 3
    exit 3
  }
  if (min_messages == "" || min_messages !~ /^[0-9]+$/) {
    print "canary-analysis: min_messages must be a whole number, got '" min_messages "'" > "/dev/stderr"
    exit_code = 3
    exit 3
  }
}

/^# TYPE smtp_gateway_messages_total / { typed[release] = 1; next }
/^smtp_gateway_messages_total\{/ {
  outcome = outcome_of($0)
  value = $0
  sub(/^[^{]*\{[^}]*\}[ \t]*/, "", value)
  split(value, fields, /[ \t]+/)
  count[release, outcome] += fields[1]
}

END {
  if (exit_code != "") exit exit_code
  for (i = 1; i <= 2; i++) {
    r = i == 1 ? "stable" : "canary"
    if (!typed[r]) {
      print "canary-analysis: no smtp_gateway_messages_total in the " r " metrics: not the gateway's /metrics?" > "/dev/stderr"
      exit 3
    }
    answered[r] = count[r, "relayed"] + count[r, "rejected"] + count[r, "deferred"]
    deferred[r] = percent(count[r, "deferred"], answered[r])
    refused[r] = percent(count[r, "rejected"], answered[r])
    printf "%s: %d messages answered (%d relayed), %.2f%% deferred, %.2f%% refused\n", r, answered[r], count[r, "relayed"], deferred[r], refused[r]
  }
  for (i = 1; i <= 2; i++) {
    r = i == 1 ? "stable" : "canary"
    if (answered[r] < min_messages) {
      printf "too little traffic to compare: the %s answered %d messages, fewer than %d\n", r, answered[r], min_messages
      exit 2
    }
  }
  worse = 0
  if (deferred["canary"] - deferred["stable"] > max_increase) {
    printf "the canary defers %.2f%% of messages, the stable release %.2f%%: %.2f percentage points more, over the allowed %s\n", deferred["canary"], deferred["stable"], deferred["canary"] - deferred["stable"], max_increase
    worse = 1
  }
  if (refused["canary"] - refused["stable"] > max_increase) {
    printf "the canary refuses %.2f%% of messages, the stable release %.2f%%: %.2f percentage points more, over the allowed %s\n", refused["canary"], refused["stable"], refused["canary"] - refused["stable"], max_increase
    worse = 1
  }
  if (worse) exit 1
  printf "the canary is within %s percentage points of the stable release on deferrals and refusals\n", max_increase
}
