# `info` opens the mdpy device through every IOMMU back end the kernel offers, and the
# reports agree with each other (info-raw compares them with the raw ioctls).
. /etc/vfioh/lib.sh
need MDPY
info_across_backends "$MDPY" mdpy
