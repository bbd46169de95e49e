# shellcheck shell=bash
# Shared helpers of the bed's host side.

vm_log() { echo "[vm] $*" >&2; }
vm_die() { echo "[vm] error: $*" >&2; exit 2; }

# Installs the Debian packages the bed needs, when something is missing.
vm_ensure_packages() {
    local need=() p
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    [ -f /usr/src/linux-source-6.12.tar.xz ] || need+=(linux-source-6.12)
    # grep reads all its input (no -q): under pipefail, a grep that quits early would kill
    # the writer with SIGPIPE and fail the pipeline although the line was there.
    [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -x cttyhack >/dev/null \
        && file -L /bin/busybox 2>/dev/null | grep static >/dev/null || need+=(busybox-static)
    for p in cpio flex bison bc make gcc file; do command -v "$p" >/dev/null || need+=("$p"); done
    [ -f /usr/include/libelf.h ] || need+=(libelf-dev)
    [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
    [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
    command -v xz >/dev/null || need+=(xz-utils)
    command -v kmod >/dev/null || need+=(kmod)
    [ ${#need[@]} -eq 0 ] && return 0
    vm_log "installing: ${need[*]}"
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null || vm_die "apt-get update failed"
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || vm_die "apt-get install ${need[*]} failed"
}
