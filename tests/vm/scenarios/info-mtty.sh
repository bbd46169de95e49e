# `info` opens the mtty device through every IOMMU back end the kernel offers, and the
# reports agree with each other (info-raw compares them with the raw ioctls).
. /etc/vfioh/lib.sh
need MTTY_A
info_across_backends "$MTTY_A" mtty
