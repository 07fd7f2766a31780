#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the integration tests (make test-slurm) and
# for trying atso_nnunet's SLURM executor without a real cluster.
#
#   scripts/slurm_cluster.sh up [--accounting]   install (Debian) if missing, configure, start, wait
#   scripts/slurm_cluster.sh status               sinfo / squeue and the daemons this script started
#   scripts/slurm_cluster.sh down                 cancel the jobs, stop exactly the daemons it started
#
# Needs root (daemons, /etc/slurm). Without --accounting there is no slurmdbd: `sacct` fails, as on
# small sites; with --accounting, MariaDB (Debian's) and slurmdbd are started too.
# The configuration is /etc/slurm/slurm.conf: written by this script (first line says so) when there
# is none; an existing one not written here is used as it is (a site's own configuration).
#
# Environment: SLURM_CLUSTER_DIR (default /var/tmp/atso-slurm: state, spool, logs, pids),
#              SLURM_CLUSTER_CPUS / SLURM_CLUSTER_MEM_MB (default: the node as `slurmd -C` detects it, 90% of its memory).
#              SLURM_CLUSTER_WAIT_S (default 180): how long to wait for the node to turn idle.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/var/tmp/atso-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by atso_nnunet scripts/slurm_cluster.sh"
HOST=$(hostname -s)
PIDS=$DIR/pids          # one file per daemon this script started: <name> holding its pid
T0=$(date +%s.%N)

say() { printf '[slurm_cluster %6.1fs] %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN {print a - b}')" "$*"; }
die() { echo "slurm_cluster: $*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (starts munged, slurmctld, slurmd; writes $CONF)"; }

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null || missing+=(slurm-wlm)
    command -v munged >/dev/null || missing+=(munge)
    if [ "${1:-}" = accounting ]; then
        command -v slurmdbd >/dev/null || missing+=(slurmdbd)
        command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install SLURM and munge yourself"
    echo "installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# start NAME CMD...: run a daemon in the foreground of its own session, record its pid.
start() {
    local name=$1; shift
    setsid "$@" >>"$DIR/log/$name.out" 2>&1 < /dev/null &
    echo $! > "$PIDS/$name"
    say "started $name (pid $!)"
}

alive() { [ -f "$PIDS/$1" ] && kill -0 "$(cat "$PIDS/$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local end=$(( $(date +%s) + limit ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || { tail -n 30 "$DIR"/log/*.log "$DIR"/log/*.out 2>/dev/null >&2; die "$what: not ready after ${limit}s"; }
        sleep 0.3
    done
}

write_slurm_conf() {
    local accounting=$1
    # The node's shape as slurmd itself detects it (slurmd -C), so that its registration can never
    # be refused for "Low CPUs" / "Low RealMemory" (a node left INVAL never becomes idle).
    local hw cpus mem_mb topo=""
    hw=$(slurmd -C 2>/dev/null | head -1 || true)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
    mem_mb=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
    [ -n "$cpus" ] || cpus=$(nproc)
    if [ -n "$mem_mb" ]; then
        mem_mb=$(( mem_mb * 9 / 10 ))
        topo=$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$hw" || true)
    else
        mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    fi
    if [ -n "${SLURM_CLUSTER_CPUS:-}" ]; then cpus=$SLURM_CLUSTER_CPUS; topo=""; fi
    mem_mb=${SLURM_CLUSTER_MEM_MB:-$mem_mb}
    local acct="AccountingStorageType=accounting_storage/none"
    if [ "$accounting" = 1 ]; then
        acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/none"
    fi
    mkdir -p /etc/slurm
    cat > "$CONF" <<EOF
$MARK
ClusterName=atso
# everything on the loopback: no name resolution or network needed
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# containers and CI machines often lack a writable cgroup hierarchy
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$acct
JobCompType=jobcomp/none
MpiDefault=none
# how long ended jobs stay visible to squeue / scontrol (the driver reads states from there without sacct)
MinJobAge=300
KillWait=10
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus ${topo:+$topo }RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged already running (not started here, not stopped by down)"
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    start munged runuser -u munge -- munged -F
    wait_for 20 munged sh -c 'munge -n | unmunge'
}

start_accounting() {
    local mysqld
    mysqld=$(command -v mariadbd || command -v mysqld)
    local sock=/run/mysqld/mysqld.sock
    if [ -S $sock ]; then
        mariadb-admin --socket=$sock ping >/dev/null 2>&1 && die "a MariaDB/MySQL server already runs ($sock): stop it, or start without --accounting"
        rm -f $sock
    fi
    install -d -o mysql -g mysql "$DIR/mysql" /run/mysqld
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql" \
            --auth-root-authentication-method=socket --skip-test-db >"$DIR/log/mariadb-install.out" 2>&1
    fi
    start mariadb "$mysqld" --no-defaults --user=mysql --datadir="$DIR/mysql" --socket=$sock \
        --skip-networking --pid-file="$DIR/mysql/mariadbd.pid" --log-error="$DIR/mysql/error.log"
    wait_for 60 mariadb mariadb --socket=$sock -e "select 1" || { tail -n 20 "$DIR/mysql/error.log" >&2; exit 1; }
    mariadb --socket=$sock -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'atso-test';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    cat > "$DBD_CONF" <<EOF
$MARK
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=atso-test
EOF
    chmod 600 "$DBD_CONF"
    start slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -i list cluster
    sacctmgr -i add cluster atso >/dev/null 2>&1 || true
}

node_state() { sinfo -h -n "$HOST" -o '%T|%E' 2>/dev/null | head -1; }

# wait_node_idle SECONDS: wait for the node to register and turn idle, nudging it every 15 s when it
# does not (a lost registration, a DOWN/DRAIN left by a slow start, a slurmd that died), and saying
# what it saw; on failure the node's record and the daemons' logs go to stdout, where CI shows them.
wait_node_idle() {
    local limit=$1 end next state restarted=0
    end=$(( $(date +%s) + limit )); next=$(( $(date +%s) + 15 ))
    while :; do
        state=$(node_state)
        [ "${state%%|*}" = idle ] && return 0
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "node $HOST: last state '${state:-none}' after ${limit}s; scontrol show node:"
            scontrol show node "$HOST" 2>&1 || true
            for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log "$DIR"/log/munged.out; do
                [ -f "$f" ] && { echo "--- tail $f"; grep -v pmix "$f" | tail -n 15; }
            done
            die "node $HOST idle: not ready after ${limit}s (state '${state:-none}')"
        fi
        if [ "$(date +%s)" -ge "$next" ]; then
            next=$(( $(date +%s) + 15 ))
            say "node $HOST not idle yet: state '${state:-none}'"
            if ! alive slurmd && [ $restarted = 0 ]; then
                say "slurmd exited: starting it again"; restarted=1
                start slurmd slurmd -D -N "$HOST"
            else
                case "${state%%|*}" in
                    down*|drain*|fail*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
                    *) scontrol reconfigure >/dev/null 2>&1 || true ;;  # makes slurmd register again
                esac
            fi
        fi
        sleep 0.5
    done
}

up() {
    local accounting=0
    [ "${1:-}" = --accounting ] && accounting=1
    need_root
    if sinfo -h >/dev/null 2>&1; then
        say "a SLURM controller already answers (sinfo): nothing started"; sinfo; return 0
    fi
    install_packages $([ $accounting = 1 ] && echo accounting)
    say "packages ready"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$PIDS"
    if [ ! -f "$CONF" ] || head -1 "$CONF" | grep -qF "$MARK"; then
        write_slurm_conf $accounting
    else
        say "using the existing $CONF (not written by this script)"
        HOST=$(awk -F'[= ]' '/^NodeName=/ {print $2; exit}' "$CONF")
    fi
    start_munge
    if [ $accounting = 1 ]; then start_accounting; say "accounting ready (slurmdbd)"; fi
    start slurmctld slurmctld -D -i
    wait_for 30 slurmctld scontrol ping
    start slurmd slurmd -D -N "$HOST"
    wait_node_idle "${SLURM_CLUSTER_WAIT_S:-180}"
    say "cluster up"
    sinfo
}

stop_pid() {  # stop_pid NAME: SIGTERM the recorded pid, SIGKILL after 20 s
    local name=$1 pid
    [ -f "$PIDS/$name" ] || return 0
    pid=$(cat "$PIDS/$name")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        say "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name"
}

down() {
    need_root
    [ -d "$PIDS" ] || { say "nothing started by this script ($PIDS missing)"; return 0; }
    if alive slurmctld; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            say "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.3; done
        fi
    fi
    for name in slurmd slurmctld slurmdbd mariadb munged; do stop_pid "$name"; done
    for conf in "$CONF" "$DBD_CONF"; do
        if [ -f "$conf" ] && head -1 "$conf" | grep -qF "$MARK"; then rm -f "$conf"; fi
    done
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/mysql" "$PIDS"
    say "down (logs kept in $DIR/log)"
}

status() {
    for name in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name"))"; fi
    done
    sinfo 2>&1 || true
    squeue 2>&1 || true
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up [--accounting] | status | down" >&2; exit 2 ;;
esac
