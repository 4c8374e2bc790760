#!/bin/sh
# Container entrypoint for Minion.
#
#   entrypoint.sh [serve] [serve flags...]   run a node (the default)
#   entrypoint.sh worker|export|cluster|...  any other minion subcommand, run as is
#
# For `serve`, everything is configured through MINION_* variables (see docs/operations.md); this
# script only fills in what a container cannot know in advance:
#
#   MINION_NODE_ID           when unset: the node_id recorded in $MINION_DATA_DIR/cluster, else the
#                            file $MINION_NODE_ID_DIR/$HOSTNAME, else the StatefulSet ordinal of
#                            the hostname plus one (minion-0 -> 1, minion-2 -> 3).
#   MINION_NODE_ID_DIR       directory of per-pod node id overrides (default /etc/minion/node-ids),
#                            for a pod whose volume was lost and that must come back under a new id.
#   MINION_ADVERTISE_API     default: $MINION_ADVERTISE_HOST:<port of MINION_LISTEN>
#   MINION_ADVERTISE_RAFT    default: $MINION_ADVERTISE_HOST:<port of MINION_RAFT_LISTEN>
#   MINION_ADVERTISE_HOST    default: $HOSTNAME
#   MINION_JOIN_VIA          URL of the client API of an existing member (or of a Service in front
#                            of the members). When set, the node starts with --join and this script
#                            runs `minion cluster add ... --voter` against it until it succeeds or
#                            the node is already a member.
#   MINION_BOOTSTRAP_NODE_ID the one node id that forms the cluster when MINION_JOIN_VIA is set but
#                            nothing answers there (first start of a StatefulSet). Default 1; set it
#                            to 0 to never form a cluster from this template.
#   MINION_ADMIN_TOKEN       also used as MINION_TOKEN for this script's own CLI calls.
#
# SIGTERM and SIGINT are forwarded to the server, whose exit status becomes the container's.
set -eu

log() {
    printf '%s minion-entrypoint: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# --- anything other than `serve` runs the binary directly -----------------------------------------
if [ "$#" -eq 0 ]; then
    set -- serve
fi
case "$1" in
    serve) shift ;;
    -*) ;; # only flags: they are serve's
    *) exec minion "$@" ;;
esac

: "${MINION_DATA_DIR:=/data}"
: "${MINION_LISTEN:=0.0.0.0:7070}"
: "${MINION_RAFT_LISTEN:=0.0.0.0:7071}"
export MINION_DATA_DIR MINION_LISTEN MINION_RAFT_LISTEN

# shellcheck disable=SC3028 # Docker and Kubernetes set HOSTNAME; hostname(1) otherwise
host=${HOSTNAME:-$(hostname)}
identity_file="$MINION_DATA_DIR/cluster"

# The value of `key=` in the data directory's identity file (empty when absent).
identity_value() {
    if [ -r "$identity_file" ]; then
        sed -n "s/^[[:space:]]*$1=\\([0-9A-Fa-f]*\\)[[:space:]]*\$/\\1/p" "$identity_file" | head -n 1
    fi
}

is_count() {
    case "$1" in
        '' | *[!0-9]*) return 1 ;;
        *) return 0 ;;
    esac
}

# --- node id ---------------------------------------------------------------------------------------
if [ -z "${MINION_NODE_ID:-}" ]; then
    recorded=$(identity_value node_id)
    override="${MINION_NODE_ID_DIR:-/etc/minion/node-ids}/$host"
    if [ -n "$recorded" ]; then
        MINION_NODE_ID=$recorded
        log "node id $MINION_NODE_ID (recorded in $identity_file)"
    elif [ -r "$override" ]; then
        MINION_NODE_ID=$(tr -d ' \t\r\n' <"$override")
        log "node id $MINION_NODE_ID (from $override)"
    else
        ordinal=${host##*-}
        is_count "$ordinal" || die "MINION_NODE_ID is unset and the hostname '$host' does not end in -<ordinal>"
        # Strip leading zeros so that the shell does not read the ordinal as octal.
        ordinal=$(printf '%s' "$ordinal" | sed 's/^0*//')
        MINION_NODE_ID=$((${ordinal:-0} + 1))
        log "node id $MINION_NODE_ID (hostname $host)"
    fi
fi
is_count "$MINION_NODE_ID" && [ "$MINION_NODE_ID" -gt 0 ] || die "invalid node id '$MINION_NODE_ID'"
export MINION_NODE_ID

# --- advertised addresses --------------------------------------------------------------------------
adv_host=${MINION_ADVERTISE_HOST:-$host}
: "${MINION_ADVERTISE_API:=$adv_host:${MINION_LISTEN##*:}}"
: "${MINION_ADVERTISE_RAFT:=$adv_host:${MINION_RAFT_LISTEN##*:}}"
export MINION_ADVERTISE_API MINION_ADVERTISE_RAFT

# The token for this script's own CLI calls; the server itself does not get MINION_TOKEN.
cli_token=${MINION_TOKEN:-${MINION_ADMIN_TOKEN:-}}
unset MINION_TOKEN
cli() {
    if [ -n "$cli_token" ]; then
        MINION_TOKEN=$cli_token minion "$@"
    else
        minion "$@"
    fi
}

# Is node $1 in the membership printed by `minion cluster status --json` ($2)?
lists_member() {
    printf '%s\n' "$2" | grep -Eq "\"node_id\"[[:space:]]*:[[:space:]]*$1([^0-9]|\$)"
}

join_via=${MINION_JOIN_VIA:-}
join_flag=
if [ -n "$join_via" ]; then
    join_flag=--join
    if [ -z "$(identity_value cluster_id)" ]; then
        # This data directory has never been part of a cluster. Before starting, ask the cluster
        # whether it already counts this node id as a member: then the volume was lost or wiped,
        # and restarting a voter on an empty directory under its old id would let it forget votes
        # and entries the quorum relied on (docs/cluster.md). Refuse instead.
        bootstrap=${MINION_BOOTSTRAP_NODE_ID:-1}
        attempt=0
        while :; do
            attempt=$((attempt + 1))
            if out=$(
                if [ -n "$cli_token" ]; then export MINION_TOKEN="$cli_token"; fi
                timeout 15 minion cluster status --json --server "$join_via" 2>&1 </dev/null
            ); then
                if lists_member "$MINION_NODE_ID" "$out"; then
                    die "node $MINION_NODE_ID is a member of the cluster at $join_via, but $MINION_DATA_DIR has never \
been part of a cluster (its volume was lost or wiped). Do not reuse the id: remove it \
('minion cluster remove $MINION_NODE_ID') or replace it ('minion cluster replace $MINION_NODE_ID --node-id NEW ...'), \
then start this node under a new id (MINION_NODE_ID, or the file ${MINION_NODE_ID_DIR:-/etc/minion/node-ids}/$host)."
                fi
                log "the cluster at $join_via does not list node $MINION_NODE_ID: joining it"
                break
            fi
            case "$out" in
                *"server answered"*)
                    # Something answers there (no leader yet, a refused token...): never form a
                    # second cluster next to it; wait and ask again.
                    log "asking $join_via for the membership (attempt $attempt): $out"
                    ;;
                *)
                    if [ "$MINION_NODE_ID" = "$bootstrap" ] && [ "$attempt" -ge 3 ]; then
                        log "nothing answers at $join_via and this is node $bootstrap: forming a new cluster"
                        join_flag=
                        join_via=
                        break
                    fi
                    if [ "$MINION_NODE_ID" != "$bootstrap" ]; then
                        # The cluster is not up yet (first start): start and keep trying to join.
                        log "nothing answers at $join_via yet: starting, will join when it does"
                        break
                    fi
                    log "nothing answers at $join_via (attempt $attempt): ${out:-timed out}"
                    ;;
            esac
            sleep 2
        done
    fi
fi
if [ -z "$join_via" ] && [ -n "$join_flag" ]; then
    join_flag=
fi

# --- run -------------------------------------------------------------------------------------------
log "starting node $MINION_NODE_ID: api $MINION_ADVERTISE_API, raft $MINION_ADVERTISE_RAFT, data $MINION_DATA_DIR${join_flag:+, waiting to be added via $join_via}"
# shellcheck disable=SC2086 # join_flag is empty or one word
minion serve $join_flag "$@" &
server_pid=$!

# shellcheck disable=SC2329 # called from the trap
forward() {
    kill "-$1" "$server_pid" 2>/dev/null || :
}
# A background job of a non-interactive shell ignores SIGINT, so every stop signal becomes SIGTERM,
# which the server handles as a graceful shutdown (docs/operations.md).
trap 'forward TERM' TERM INT HUP

# Add this node to the cluster at $join_via until that works or it is already a member.
join_loop() {
    delay=1
    attempt=0
    while kill -0 "$server_pid" 2>/dev/null; do
        attempt=$((attempt + 1))
        if out=$(cli cluster add --server "$join_via" --node-id "$MINION_NODE_ID" \
            --raft-addr "$MINION_ADVERTISE_RAFT" --api-addr "$MINION_ADVERTISE_API" --voter 2>&1 </dev/null); then
            log "added to the cluster as a voter: $out"
            return 0
        fi
        case "$out" in
            *"already a member (learner"*)
                # An earlier add was interrupted before the promotion.
                if pout=$(cli cluster promote "$MINION_NODE_ID" --server "$join_via" 2>&1 </dev/null); then
                    log "was a learner; promoted to voter: $pout"
                    return 0
                fi
                log "promoting learner $MINION_NODE_ID failed (attempt $attempt): $pout"
                ;;
            *"already a member"*)
                log "already a member of the cluster"
                return 0
                ;;
            *)
                log "cluster add via $join_via failed (attempt $attempt): $out"
                ;;
        esac
        sleep "$delay"
        if [ "$delay" -lt 16 ]; then
            delay=$((delay * 2))
        fi
    done
    return 1
}

join_pid=
if [ -n "$join_flag" ]; then
    # The TERM trap is reset in the background job, so stopping it is a plain kill.
    (
        trap - TERM INT HUP
        join_loop
    ) &
    join_pid=$!
fi

# `wait` returns early when a trapped signal arrives; keep waiting until the server is gone.
status=0
while kill -0 "$server_pid" 2>/dev/null; do
    if wait "$server_pid"; then status=0; else status=$?; fi
done
if [ -n "$join_pid" ]; then
    kill "$join_pid" 2>/dev/null || :
fi
log "server exited with status $status"
exit "$status"
