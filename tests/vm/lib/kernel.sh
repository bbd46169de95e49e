# shellcheck shell=bash
# Kernel build and cache for the real-kernel bed. Sourced by tests/vm/run.
#
# The image is cached outside the work tree, keyed by the linux-source package
# version and the hash of the config fragment (and of this file), so fresh
# clones on the same machine (CI) reuse it and only a change rebuilds it.

vm_cache_root() {
    echo "${VFIO_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-harness}"
}

# Prints the linux-source-6.12 package version, or fails.
vm_kernel_source_version() {
    dpkg-query -W -f='${Version}' linux-source-6.12 2>/dev/null
}

# Prints the cache key: <source version>-<hash of fragment + this file>.
vm_kernel_key() {
    local ver hash
    ver=$(vm_kernel_source_version) || return 1
    hash=$(cat "$VM_DIR/kernel.config" "$VM_DIR/lib/kernel.sh" | sha256sum | cut -c1-16)
    echo "${ver}-${hash}"
}

# Unpacks the kernel source once per package version; prints the source dir.
vm_kernel_source() {
    local ver root src
    ver=$(vm_kernel_source_version) || { echo "linux-source-6.12 is not installed" >&2; return 1; }
    root="$(vm_cache_root)/src/$ver"
    src="$root/linux-source-6.12"
    if [ ! -f "$root/.unpacked" ]; then
        rm -rf "$root"
        mkdir -p "$root"
        vm_log "unpacking /usr/src/linux-source-6.12.tar.xz ($ver)"
        tar -C "$root" -xf /usr/src/linux-source-6.12.tar.xz
        touch "$root/.unpacked"
    fi
    echo "$src"
}

# Builds (or reuses) the kernel; sets VM_KERNEL_BUILD (the O= tree, used for
# out-of-tree modules) and VM_BZIMAGE.
vm_kernel_build() {
    local key src out start
    key=$(vm_kernel_key) || { echo "cannot compute kernel cache key (linux-source-6.12 missing?)" >&2; return 1; }
    out="$(vm_cache_root)/kernel/$key"
    VM_KERNEL_BUILD="$out"
    VM_BZIMAGE="$out/arch/x86/boot/bzImage"
    if [ -f "$out/.complete" ] && [ -f "$VM_BZIMAGE" ]; then
        vm_log "kernel: cached $key"
        return 0
    fi
    src=$(vm_kernel_source) || return 1
    start=$(date +%s)
    vm_log "kernel: building $key (a fresh build takes a few minutes)"
    rm -rf "$out"
    mkdir -p "$out"
    (
        set -e
        cd "$src"
        make -s ARCH=x86_64 O="$out" tinyconfig >/dev/null
        scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" "$VM_DIR/kernel.config" >/dev/null
        make -s ARCH=x86_64 O="$out" olddefconfig >/dev/null
    ) >"$out/config.log" 2>&1 || { echo "kernel config failed, see $out/config.log" >&2; return 1; }
    # Every option the fragment asks for must have survived olddefconfig.
    local missing=0 line opt val
    while IFS= read -r line; do
        case "$line" in CONFIG_*=*) ;; *) continue ;; esac
        opt=${line%%=*}
        val=${line#*=}
        if [ "$val" = "n" ]; then
            if grep -q "^$opt=y" "$out/.config"; then
                echo "kernel config: $opt should be off but is on" >&2; missing=1
            fi
        elif ! grep -qx "$opt=$val" "$out/.config"; then
            echo "kernel config: $opt=$val was dropped by Kconfig (unmet dependency?)" >&2; missing=1
        fi
    done <"$VM_DIR/kernel.config"
    [ "$missing" = 0 ] || return 1
    if ! make -C "$src" ARCH=x86_64 O="$out" -j"$(nproc)" bzImage modules >"$out/build.log" 2>&1; then
        tail -n 30 "$out/build.log" >&2
        echo "kernel build failed, full log: $out/build.log" >&2
        return 1
    fi
    touch "$out/.complete"
    vm_log "kernel: built in $(( $(date +%s) - start ))s"
}
