#!/usr/bin/env bash
# A real single-node SLURM on this machine, for tests of `snakemake --profile slurm` (tests/test_slurm.py).
#
#   scripts/local_slurm.sh up       install Debian's slurm-wlm, munge, slurmdbd and MariaDB if missing, write the
#                                   config, start the daemons, wait until the node takes jobs
#   scripts/local_slurm.sh down     cancel queued jobs, stop exactly the daemons this script started (by PID)
#   scripts/local_slurm.sh status   the daemons this script started, the node, the queue
#
# Needs root and Debian (apt-get); no systemd: each daemon runs in the foreground under setsid, and its PID goes to
# $ETCHAT_SLURM_STATE/<daemon>.pid. A daemon that was already running when `up` came is used, never stopped.
# Accounting goes through slurmdbd + MariaDB, so `sacct` and `sacctmgr` work as on a production cluster (the SLURM
# plugin's default status command, account checks, and the tests' checks of what each job was given).
# The node has ETCHAT_SLURM_GPUS fake GPUs (generic resource gpu, type ETCHAT_SLURM_GPU_TYPE): character devices
# with /dev/null's numbers, so SLURM accepts and schedules GPU requests and sets CUDA_VISIBLE_DEVICES; code in the
# jobs finds no CUDA driver and runs on CPU.
#
# Settings (environment; defaults in brackets):
#   ETCHAT_SLURM_GPUS       fake GPUs on the node [2]
#   ETCHAT_SLURM_GPU_TYPE   their type, what `gpu_model` names in the profile [fake]
#   ETCHAT_SLURM_PARTITION  the partition [debug]
#   ETCHAT_SLURM_ACCOUNT    the account root submits with [etchat]
#   ETCHAT_SLURM_STATE      PID files, daemon output, fake devices [/run/etchat-slurm]
set -euo pipefail

GPUS=${ETCHAT_SLURM_GPUS:-2}
GPU_TYPE=${ETCHAT_SLURM_GPU_TYPE:-fake}
PARTITION=${ETCHAT_SLURM_PARTITION:-debug}
ACCOUNT=${ETCHAT_SLURM_ACCOUNT:-etchat}
STATE=${ETCHAT_SLURM_STATE:-/run/etchat-slurm}
CLUSTER=etchat
HOST=$(hostname -s)
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
MARK="# written by etchat-pipeline scripts/local_slurm.sh"
DB=slurm_acct_db
DB_USER=slurm
DB_PASS=etchat-local-test # the database listens on 127.0.0.1 only
PACKAGES=(munge slurm-client slurmctld slurmd slurmdbd mariadb-server)
# The order they start in; `down` stops them in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

say() { echo "local_slurm: $*" >&2; }
die() {
    say "ERROR: $*"
    exit 1
}

# retry SECONDS CMD...: run CMD every 0.25 s until it succeeds; fail after SECONDS.
retry() {
    local deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.25
    done
}

# ours NAME: the daemon NAME runs under the PID this script recorded (the PID's command name is checked, so a
# recycled PID is never taken for it).
ours() {
    local pid
    pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# launch NAME CMD...: start CMD (a daemon in the foreground) detached, record its PID.
launch() {
    local name=$1
    shift
    setsid "$@" >"$STATE/$name.out" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
    say "started $name (pid $!)"
}

stop() {
    local name=$1 pid
    if ! ours "$name"; then
        rm -f "$STATE/$name.pid"
        return 0
    fi
    pid=$(cat "$STATE/$name.pid")
    kill -TERM "$pid"
    retry 30 test ! -e "/proc/$pid" || {
        say "$name (pid $pid) still running 30 s after SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    }
    rm -f "$STATE/$name.pid"
    say "stopped $name (pid $pid)"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    # The packages' maintainer scripts must not start the daemons: this script starts them.
    local policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy=1
    fi
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    ((policy)) && rm -f /usr/sbin/policy-rc.d
    return 0
}

write_config() {
    for f in slurm.conf gres.conf slurmdbd.conf; do
        if [ -s "$CONF_DIR/$f" ] && ! grep -qxF "$MARK" "$CONF_DIR/$f"; then
            die "$CONF_DIR/$f exists and was not written by this script: this machine has its own SLURM; not touching it"
        fi
    done
    mkdir -p "$STATE/gpu" "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
    local cpus mem gres="" gres_types=""
    cpus=$(nproc)
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    mem=$((mem * 85 / 100)) # headroom for the system and the daemons
    if ((GPUS > 0)); then
        # SLURM indexes a GPU by its device file, which must be a character device: clones of /dev/null.
        local i
        for ((i = 0; i < GPUS; i++)); do
            [ -c "$STATE/gpu/nvidia$i" ] || mknod -m 666 "$STATE/gpu/nvidia$i" c 1 3 ||
                die "mknod $STATE/gpu/nvidia$i failed (a container without CAP_MKNOD?): fake GPUs need device nodes"
        done
        gres_types="GresTypes=gpu"
        gres="Gres=gpu:$GPU_TYPE:$GPUS"
        printf '%s\nAutoDetect=off\nNodeName=%s Name=gpu Type=%s File=%s/gpu/nvidia[0-%d]\n' \
            "$MARK" "$HOST" "$GPU_TYPE" "$STATE" $((GPUS - 1)) >"$CONF_DIR/gres.conf"
    else
        rm -f "$CONF_DIR/gres.conf"
    fi
    cat >"$CONF_DIR/slurm.conf" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No cgroups (no systemd here): processes tracked by parent PID; memory is booked, not enforced.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
MailProg=/bin/true
SlurmctldPidFile=$STATE/slurmctld.selfpid
SlurmdPidFile=$STATE/slurmd.selfpid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
# Finished jobs stay in scontrol/squeue for 30 minutes (the tests read them there too).
MinJobAge=1800
InactiveLimit=0
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
$gres_types
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$STATE/slurmdbd.selfpid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB
EOF
    chmod 600 "$CONF_DIR/slurmdbd.conf"
    say "node $HOST: $cpus CPUs, $mem MB, ${gres:-no GPUs}; partition $PARTITION"
}

munge_works() { munge -n | unmunge; }
mariadb_works() { mariadb -uroot -e 'select 1'; }
node_ready() { sinfo -h -N -n "$HOST" -o %T | grep -qE '^(idle|mixed|allocated)'; }

# foreign NAME: a NAME process runs that this script did not start.
foreign() { ! ours "$1" && pgrep -x "$1" >/dev/null; }

start_munge() {
    ours munged || retry 1 munge_works && return 0
    install -d -o munge -g munge /run/munge /var/lib/munge /var/log/munge
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
    retry 20 munge_works || die "munged did not start: $(tail -3 "$STATE/munged.out")"
}

start_mariadb() {
    if ! ours mariadbd && ! retry 1 mariadb_works; then
        install -d -o mysql -g mysql /run/mysqld
        [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        launch mariadbd /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --innodb-buffer-pool-size=256M
        retry 60 mariadb_works || die "MariaDB did not start: $(tail -3 "$STATE/mariadbd.out")"
    fi
    mariadb -uroot <<EOF
CREATE DATABASE IF NOT EXISTS $DB;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB.* TO '$DB_USER'@'localhost';
EOF
}

start_slurmdbd() {
    ours slurmdbd || launch slurmdbd /usr/sbin/slurmdbd -D
    retry 60 sacctmgr -n list cluster || die "slurmdbd did not start: $(tail -3 "$STATE/slurmdbd.out")"
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add account "$ACCOUNT" description=etchat-tests organization=etchat >/dev/null
    sacctmgr -n -P -s list user root format=account | grep -qx "$ACCOUNT" ||
        sacctmgr -i add user root account="$ACCOUNT" >/dev/null
}

start_slurm() {
    local fresh=0
    ours slurmctld || { launch slurmctld /usr/sbin/slurmctld -D && fresh=1; }
    retry 30 scontrol ping || die "slurmctld did not start: $(tail -3 "$STATE/slurmctld.out")"
    ours slurmd || launch slurmd /usr/sbin/slurmd -D
    if ! retry 30 node_ready; then
        # A node left down by an earlier, killed run.
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        retry 30 node_ready || die "node $HOST does not take jobs: $(sinfo -N -h); $(tail -3 "$STATE/slurmd.out")"
    fi
    # Jobs that a killed earlier run left in slurmctld's saved state would hold the node's CPUs and GPUs.
    local jobs
    jobs=$(squeue -h -o %i)
    if ((fresh)) && [ -n "$jobs" ]; then
        say "cancelling jobs left by an earlier run: $(xargs <<<"$jobs")"
        # shellcheck disable=SC2086
        scancel $jobs || true
    fi
}

up() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    local d
    for d in slurmdbd slurmctld slurmd; do
        foreign "$d" && die "a $d that this script did not start is running (pid $(pgrep -x "$d" | head -1)); stop it first"
    done
    install_packages
    mkdir -p "$STATE"
    write_config
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    say "ready: partition $PARTITION, account $ACCOUNT, $(sinfo -h -N -o '%N %c CPUs %m MB %G')"
}

down() {
    if ours slurmctld; then
        local jobs
        jobs=$(squeue -h -o %i)
        if [ -n "$jobs" ]; then
            say "cancelling jobs $(xargs <<<"$jobs")"
            # shellcheck disable=SC2086
            scancel $jobs || true
            retry 30 test -z "$(squeue -h -o %i)" || say "jobs still queued: $(squeue -h -o %i | xargs)"
        fi
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop "${DAEMONS[i]}"; done
}

status() {
    local d
    for d in "${DAEMONS[@]}"; do
        if ours "$d"; then echo "$d: running, pid $(cat "$STATE/$d.pid")"; else echo "$d: not started by this script"; fi
    done
    if ours slurmctld; then
        sinfo -N
        squeue
    fi
}

case ${1:-} in
up | down | status) "$1" ;;
*)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
