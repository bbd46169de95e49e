# shellcheck shell=bash
# The "debian" flavour of the bed: the stock Debian 6.12 kernel (VFIO, type1, vfio-pci and
# mdev as modules; no iommufd, no sample drivers) with the mdev samples built out-of-tree
# against its headers. Shows the harness on a distribution kernel and its behaviour when
# iommufd is absent. Sourced by tests/vm/run.

# Picks the newest stock 6.12 amd64 kernel Debian offers; prints its version
# (e.g. 6.12.117+deb12-amd64).
vm_debian_version() {
    local pkg
    pkg=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' 2>/dev/null \
        | awk '{print $1}' | sort -V | tail -n 1)
    if [ -z "$pkg" ]; then
        local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq >/dev/null 2>&1 || true
        pkg=$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' 2>/dev/null \
            | awk '{print $1}' | sort -V | tail -n 1)
    fi
    [ -n "$pkg" ] || return 1
    echo "${pkg#linux-image-}"
}

# Fetches (once) the kernel image package unpacked into the cache (not installed: no boot
# loader hooks run), installs the matching headers package, and builds the mdev samples
# against them. Sets VM_BZIMAGE, VM_KERNEL_BUILD (the headers, for out-of-tree modules) and
# VM_EXTRA_MODULES (every .ko the guest needs, in load order).
vm_debian_kernel() {
    local ver root sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    ver=$(vm_debian_version) || { echo "no linux-image-6.12.*+deb12-amd64 package found" >&2; return 1; }
    root="$(vm_cache_root)/debian/$ver"
    if [ ! -f "$root/.unpacked" ]; then
        vm_log "debian flavour: fetching linux-image-$ver"
        rm -rf "$root"; mkdir -p "$root/deb"
        (cd "$root/deb" && apt-get download "linux-image-$ver" >/dev/null 2>&1) \
            || { echo "apt-get download linux-image-$ver failed" >&2; return 1; }
        dpkg-deb -x "$root"/deb/*.deb "$root/image"
        rm -rf "$root/deb"
        touch "$root/.unpacked"
    fi
    if [ ! -d "/usr/src/linux-headers-$ver" ]; then
        vm_log "debian flavour: installing linux-headers-$ver"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "linux-headers-$ver" >/dev/null || { echo "installing linux-headers-$ver failed" >&2; return 1; }
    fi
    VM_BZIMAGE="$root/image/boot/vmlinuz-$ver"
    VM_KERNEL_BUILD="/usr/src/linux-headers-$ver"
    local moddir="$root/image/lib/modules/$ver"

    # The mdev samples, out of tree, from the same linux-source the bed's own kernel uses.
    local src samples="$root/samples"
    src=$(vm_kernel_source) || return 1
    if [ ! -f "$samples/.built" ]; then
        vm_log "debian flavour: building the mdev samples against linux-headers-$ver"
        rm -rf "$samples"; mkdir -p "$samples"
        cp "$src"/samples/vfio-mdev/{mtty,mdpy,mbochs}.c "$src"/samples/vfio-mdev/mdpy-defs.h "$samples/"
        echo 'obj-m := mtty.o mdpy.o mbochs.o' >"$samples/Kbuild"
        make -s -C "$VM_KERNEL_BUILD" M="$samples" modules >"$samples/build.log" 2>&1 \
            || { tail -n 20 "$samples/build.log" >&2; echo "building the samples failed" >&2; return 1; }
        touch "$samples/.built"
    fi

    # Decompressed copies of the distribution modules the guest needs, in dependency order.
    local unpacked="$root/modules"
    mkdir -p "$unpacked"
    VM_EXTRA_MODULES=()
    local seen=" "
    _vm_deb_add() { # NAME: adds NAME's dependencies, then NAME
        local name=$1 f dep
        case "$seen" in *" $name "*) return 0 ;; esac
        seen+="$name "
        f=$(find "$moddir" \( -name "$name.ko.xz" -o -name "${name//_/-}.ko.xz" \) | head -n 1)
        [ -n "$f" ] || { echo "module $name not found in linux-image-$ver" >&2; return 1; }
        for dep in $(modinfo -F depends "$f" | tr ',' ' '); do _vm_deb_add "$dep" || return 1; done
        local out="$unpacked/$(basename "${f%.xz}")"
        [ -f "$out" ] || xz -dc "$f" >"$out"
        VM_EXTRA_MODULES+=("$out")
    }
    local m
    # kvm_amd: QEMU's TCG `-cpu max` is an AMD CPU with SVM, so the guest gets /dev/kvm and
    # VFIO groups are registered with a real KVM-VFIO device (kernel-kvm scenario).
    # VM_DEBIAN_MORE_MODULES: more distribution modules, e.g. virtio_net for the pair bed.
    for m in vfio vfio_iommu_type1 vfio_pci mdev kvm_amd ${VM_DEBIAN_MORE_MODULES:-}; do
        _vm_deb_add "$m" || return 1
    done
    for m in mtty mdpy mbochs; do VM_EXTRA_MODULES+=("$samples/$m.ko"); done
}
